"""Launch the pending cells of a sweep as one Hydra multirun (any Hydra launcher works).

Design: every pending cell becomes a generated ``# @package _global_`` config
``<sweep_dir>/.cells/sweep_cell/<cell id>.yaml`` (group selections go into its defaults list as
``override /task: glue/rte``, values into the body, and ``hydra.sweep.subdir: <cell id>``). The
generated folder is put on Hydra's search path with ``--config-dir`` and the sweep runs

    python train.py -m --config-dir <sweep_dir>/.cells +sweep_cell=<id1>,<id2>,... \
        hydra.sweep.dir=<sweep_dir> raise_on_failure=false [user overrides]

so the basic sweeper enumerates exactly the pending cells (not a cartesian product), every
launcher (basic, submitit_local, submitit_slurm) sees ordinary jobs, and each run's output dir is
``<sweep_dir>/<cell id>`` whatever the launch. A cell whose ``metrics.json`` says ``ok`` is
skipped, so re-running the command resumes after a crash or preemption. ``raise_on_failure=false``
makes train.py record an exception as ``status: failed`` and return, so the other jobs go on; a job
that dies without writing its final metrics (killed, segfault) is marked failed here afterwards,
and a cell naming a config option that does not exist is recorded as failed without launching it
(a composition error would stop Hydra's whole basic-launcher multirun).

Stale cells: a cell id encodes only axis labels, so every launched cell also gets a fingerprint
(a hash of its override set from the sweep file: fixed, scale fixed, axis overrides) in
``<run dir>/sweep_fingerprint.json``. A run dir whose fingerprint differs from the cell's current
one was made with other settings: it is moved aside to ``<run dir>.stale-<n>`` and the cell is
launched fresh (never resumed from its old checkpoint); the report leaves such runs out. Run dirs
without the file (made before fingerprints were recorded, or by hand) count as current.
Command-line overrides and ``--data-root`` are not part of the fingerprint.

A run dir is also stale when the run in it recorded another *result-relevant config*
(``fingerprint.json``, :mod:`regbench.run_dir`) than the cell would run now, e.g. after a
command-line override that changes results: train.py would refuse to resume it, so it is moved
aside and relaunched fresh like the above.

One ``run`` at a time per sweep dir: the launch holds ``<sweep dir>/.lock`` (:mod:`regbench.lock`),
so two concurrent runs of the same grid cannot train one cell twice into one dir. SIGTERM or SIGINT
to ``python -m regbench.sweep run`` is passed on to the whole multirun (its process group: the jobs,
their DDP ranks, submitit's local workers), which stop as ``interrupted``; the command then exits
with 128 + the signal number. Jobs that do not stop within :data:`STOP_GRACE_S` are killed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import yaml
from omegaconf import OmegaConf

from regbench.atomic import write_json_atomic, write_text_atomic
from regbench.lock import DirLock
from regbench.run_dir import fingerprint_record, mismatch_message, read_fingerprint_record
from regbench.sweep.data_root import TaskData, resolve_task_data
from regbench.sweep.spec import Cell, Sweep

CELL_GROUP = "sweep_cell"
CELLS_DIRNAME = ".cells"
METRICS_FILE = "metrics.json"
FINGERPRINT_FILE = "sweep_fingerprint.json"
FINGERPRINT_VERSION = 1
STALE_SUFFIX = ".stale-"
DATA_DIR_KEY = "task.data_dir"
# Where a run belongs (train.py's `sweep` node): labels for loggers, not part of the fingerprint.
SWEEP_NAME_KEY, SWEEP_SCALE_KEY, SWEEP_CELL_KEY = "sweep.name", "sweep.scale", "sweep.cell"
# W&B grouping: every run of one sweep+scale shares a group; each cell is named by its id.
WANDB_GROUP_KEY = "logger.wandb.group"
WANDB_NAME_KEY = "logger.wandb.name"
# statuses train.py writes; all but ok are relaunched (failed fresh or resumed, the others resumed)
STATUSES = ("ok", "failed", "running", "interrupted", "incomplete")
STOP_GRACE_S = 120.0  # how long a signalled multirun may take to stop before it is killed


@dataclass(frozen=True)
class RunState:
    """What a cell's run dir says: a status of :data:`STATUSES` or ``missing``."""

    status: str
    metrics: dict[str, Any] | None = None
    error: str | None = None


def read_state(run_dir: Path) -> RunState:
    """Read ``<run_dir>/metrics.json``; an unreadable file counts as failed (it will be re-run)."""
    path = run_dir / METRICS_FILE
    if not path.is_file():
        return RunState("missing")
    try:
        metrics = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return RunState("failed", None, f"unreadable {METRICS_FILE}: {exc}")
    status = metrics.get("status")
    if status not in STATUSES:
        return RunState("failed", metrics, f"unknown status {status!r} in {path}")
    return RunState(status, metrics, metrics.get("error"))


def cell_fingerprint(cell: Cell) -> str:
    """Hash of the cell's override set (key order does not matter, values do: ``1`` != ``1.0``)."""
    payload = json.dumps({"version": FINGERPRINT_VERSION, "overrides": cell.overrides},
                         sort_keys=True, separators=(",", ":"), default=repr)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def read_fingerprint(run_dir: Path) -> str | None:
    """The fingerprint recorded in ``run_dir``; None when there is none (an unreadable file reads
    as a fingerprint no cell has, i.e. stale)."""
    path = run_dir / FINGERPRINT_FILE
    if not path.is_file():
        return None
    try:
        return str(json.loads(path.read_text())["fingerprint"])
    except (OSError, ValueError, KeyError, TypeError):
        return "<unreadable>"


def is_stale(cell: Cell, run_dir: Path) -> bool:
    """True when ``run_dir`` records a fingerprint other than the cell's current one."""
    stored = read_fingerprint(run_dir)
    return stored is not None and stored != cell_fingerprint(cell)


def write_fingerprint(cell: Cell, run_dir: Path, launch: dict[str, Any] | None = None) -> None:
    """Record the cell's fingerprint (and, for reading, its overrides) in its run dir, atomically."""
    run_dir.mkdir(parents=True, exist_ok=True)
    record = {"fingerprint": cell_fingerprint(cell), "version": FINGERPRINT_VERSION, "cell": cell.id,
              "overrides": cell.overrides, "launch": launch or {}}
    write_text_atomic(run_dir / FINGERPRINT_FILE, json.dumps(record, indent=2, default=repr))


def move_aside(run_dir: Path) -> Path:
    """Rename a stale run dir to the first free ``<run dir>.stale-<n>``; returns the new path."""
    n = 1
    while (target := run_dir.with_name(f"{run_dir.name}{STALE_SUFFIX}{n}")).exists():
        n += 1
    os.replace(run_dir, target)
    return target


def pending_cells(cells: list[Cell], sweep_dir: Path, stale: set[str] | None = None) -> list[Cell]:
    """The cells to (re)launch: every cell whose metrics.json does not say ``ok``, and every stale one
    (``stale``: ids found stale otherwise, e.g. by their run's config fingerprint)."""
    stale = stale or set()
    return [cell for cell in cells if cell.id in stale or is_stale(cell, sweep_dir / cell.id)
            or read_state(sweep_dir / cell.id).status != "ok"]


def run_config_changes(app: "HydraApp", runs: dict[str, list[str]], sweep_dir: Path) -> dict[str, str]:
    """Cell id -> why, for run dirs whose run recorded another result-relevant config than the
    cell's overrides compose to now (``runs``: cell id -> its train.py overrides).

    Only run dirs with a ``fingerprint.json`` are composed (with Hydra's compose API, no job runs);
    a cell that does not compose is left to the launch to report.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    stored = {cell_id: record for cell_id in runs
              if (record := read_fingerprint_record(sweep_dir / cell_id)) is not None}
    if not stored:
        return {}
    changes: dict[str, str] = {}
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(app.conf_dir), version_base="1.3"):
            for cell_id, record in stored.items():
                overrides = [o for o in runs[cell_id] if not o.lstrip("+~").startswith("hydra")]
                try:
                    cfg = compose(config_name=app.config_name, overrides=overrides)
                except Exception:  # noqa: BLE001  (reported when the cell is launched)
                    continue
                message = mismatch_message(f"run dir {sweep_dir / cell_id}", record, fingerprint_record(cfg), "")
                if message:
                    changes[cell_id] = message.strip()
    finally:
        GlobalHydra.instance().clear()
    return changes


@dataclass
class HydraApp:
    """The training entry point: ``train.py`` next to its ``conf/`` folder (a checkout), or, with
    ``train_script=None``, the installed package's app (``python -m regbench.app``, its shipped
    configs). ``extra_conf_dirs``: a user's config folders on Hydra's search path."""

    train_script: Path | None
    config_name: str = "config"
    extra_conf_dirs: tuple[Path, ...] = ()

    @property
    def conf_dir(self) -> Path:
        if self.train_script is None:
            from regbench.app import CONF_DIR

            return CONF_DIR
        return self.train_script.parent / "conf"

    @property
    def conf_dirs(self) -> list[Path]:
        return [self.conf_dir, *self.extra_conf_dirs]

    @property
    def command(self) -> list[str]:
        """How a job is started (``hydra`` flags and overrides follow)."""
        if self.train_script is None:
            return [sys.executable, "-m", "regbench.app"]
        return [sys.executable, str(self.train_script)]

    @property
    def workdir(self) -> Path:
        """Where jobs start: the checkout (train.py's folder), else the current directory."""
        return self.train_script.parent if self.train_script is not None else Path.cwd()

    def search_path_overrides(self) -> list[str]:
        """``hydra.searchpath=[...]`` for the user's config folders (none: nothing)."""
        if not self.extra_conf_dirs:
            return []
        return ["hydra.searchpath=[" + ",".join(f"file://{Path(d).resolve()}" for d in self.extra_conf_dirs) + "]"]

    def is_group(self, key: str) -> bool:
        """``task``/``backbone``/``regularizer``... are config groups; dotted keys are values."""
        return "." not in key and any((d / key).is_dir() for d in self.conf_dirs)

    def missing_option(self, key: str, value: Any) -> str | None:
        """Why ``key=value`` cannot compose (no such option file), or None if it can.

        Hydra aborts a whole basic-launcher multirun on a composition error, so such cells are
        caught here and recorded as failed instead of being launched.
        """
        if not self.is_group(key):
            return None
        chosen = value if isinstance(value, list) else [value]  # a list selects several options
        absent = [v for v in chosen if isinstance(v, str) and "${" not in v
                  and not any((d / key / f"{v}.yaml").is_file() for d in self.conf_dirs)]
        if not absent:
            return None
        options = sorted({str(p.relative_to(d / key).with_suffix("")) for d in self.conf_dirs if (d / key).is_dir()
                          for p in (d / key).rglob("*.yaml")})
        files = ", ".join(f"conf/{key}/{v}.yaml" for v in absent)
        return f"MissingConfigOption: {key}={_format_value(value)}: no {files} (options: {', '.join(options)})"

    def primary_defaults(self) -> dict[str, Any]:
        """Group -> default option in the primary config's defaults list."""
        path = self.conf_dir / f"{self.config_name}.yaml"
        if not path.is_file():
            return {}
        defaults = (yaml.safe_load(path.read_text()) or {}).get("defaults") or []
        chosen: dict[str, Any] = {}
        for entry in defaults:
            if isinstance(entry, dict):
                for key, value in entry.items():
                    key = key.removeprefix("optional ").removeprefix("override ").strip()
                    chosen[key.lstrip("/")] = value
        return chosen


def cell_config(cell: Cell, app: HydraApp, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The generated ``_global_`` config of one cell (see module docstring)."""
    primary = app.primary_defaults()
    defaults: list[Any] = []
    body: dict[str, Any] = {}
    for key, value in {**cell.overrides, **(extra or {})}.items():
        if app.is_group(key):
            # `override` is required for groups already in the primary defaults, refused otherwise.
            defaults.append({(f"override /{key}" if key in primary else f"/{key}"): value})
        else:
            _set_dotted(body, key, value)
    _set_dotted(body, "hydra.sweep.subdir", cell.id)
    config: dict[str, Any] = {}
    if defaults:
        config["defaults"] = [*defaults, "_self_"]
    config.update(body)
    return config


def _set_dotted(target: dict[str, Any], key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    for part in parents:
        node = target.setdefault(part, {})
        if not isinstance(node, dict):
            raise ValueError(f"override {key!r} conflicts with a scalar set at {part!r}")
        target = node
    target[leaf] = value


def format_override(key: str, value: Any) -> str:
    """``key=value`` in Hydra's override grammar (the form a user types for ``train.py``)."""
    return f"{key}={_format_value(value)}"


def _format_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ",".join(_format_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_format_value(v)}" for k, v in value.items()) + "}"
    text = str(value)
    if text and all(ch.isalnum() or ch in "_-./:+@" for ch in text) and not text[0].isdigit():
        return text
    if text.startswith("${") and "'" not in text:
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def wandb_selected(app: HydraApp, cells: list[Cell], user_overrides: list[str]) -> bool:
    """True when the runs will log to W&B (logger=wandb in the sweep, command line or defaults)."""
    choice = app.primary_defaults().get("logger")
    for cell in cells:
        choice = cell.overrides.get("logger", choice)
    for override in user_overrides:
        key, _, value = override.lstrip("+").partition("=")
        if key == "logger":
            choice = value
    return "wandb" in str(choice)


@dataclass
class LaunchPlan:
    """Everything ``run`` will do; ``--dry-run`` prints it."""

    sweep_dir: Path
    cells: list[Cell]
    pending: list[Cell]
    command: list[str]
    cell_configs: dict[str, dict[str, Any]]
    single_run_commands: dict[str, list[str]] = field(default_factory=dict)
    unlaunchable: dict[str, str] = field(default_factory=dict)  # cell id -> why it cannot compose
    project_dir: Path | None = None
    stale: list[str] = field(default_factory=list)  # cell ids whose run dir was made with other settings
    data_root: Path | None = None
    task_data: dict[str, TaskData] = field(default_factory=dict)  # task option -> its folder under data_root
    launch_info: dict[str, Any] = field(default_factory=dict)  # recorded next to each fingerprint
    stale_why: dict[str, str] = field(default_factory=dict)  # cell id -> the result-relevant keys that changed


def select_cells(sweep: Sweep, scale: str, only: dict[str, list[str]]) -> list[Cell]:
    """The cells of ``scale`` matching ``only`` (axis -> accepted labels); unknown names are errors."""
    axes = sweep.axes_for(scale)
    for axis, labels in only.items():
        if axis not in axes:
            raise ValueError(f"--only {axis}=...: no axis {axis!r}; axes are {list(axes)}")
        valid = [v.label for v in axes[axis]]
        unknown = [label for label in labels if label not in valid]
        if unknown:
            raise ValueError(f"--only {axis}={','.join(unknown)}: not a label of {axis!r} at scale {scale!r}; labels: {valid}")
    return [c for c in sweep.cells(scale) if all(c.labels[a] in labels for a, labels in only.items())]


def task_of(cell: Cell, app: HydraApp, user_overrides: list[str]) -> Any:
    """The task option a cell runs: the command line's ``task=``, else the cell's, else the default."""
    choice = cell.overrides.get("task", app.primary_defaults().get("task"))
    for override in user_overrides:
        key, _, value = override.lstrip("+").partition("=")
        if key == "task":
            choice = value
    return choice


def plan_launch(
    sweep: Sweep,
    scale: str,
    sweep_dir: Path,
    app: HydraApp,
    user_overrides: list[str] | None = None,
    only: dict[str, list[str]] | None = None,
    data_root: Path | None = None,
    search_values: dict[str, dict[str, Any]] | None = None,
    blocked: dict[str, str] | None = None,
) -> LaunchPlan:
    """Expand the grid, drop finished cells, and build the multirun command for the rest.

    ``only`` restricts the sweep to cells whose label on each given axis is one of the given
    labels (``{"task": ["glue/rte"]}`` runs the RTE column only). ``data_root`` sets
    ``task.data_dir`` of every cell that does not set it itself (see :mod:`regbench.sweep.data_root`).
    Stale cells (see the module docstring) are pending whatever their status. ``search_values``
    (cell id -> values found by its group's search, :mod:`regbench.sweep.search`) join those
    cells' overrides and fingerprints; ``blocked`` cells (cell id -> why: their search failed or
    is unfinished) are not launched and are recorded as failed.
    """
    user_overrides = list(user_overrides or [])
    for override in user_overrides:
        if override.lstrip("+").startswith(("hydra.sweep.dir=", "hydra.sweep.subdir=")):
            raise ValueError(f"{override!r}: the sweep owns its output dirs; use --sweep-dir instead")
    sweep_dir = sweep_dir.resolve()
    if data_root is not None:
        data_root = Path(data_root).expanduser().resolve()
        if not data_root.is_dir():
            raise ValueError(f"--data-root {data_root}: no such folder")
    cells = select_cells(sweep, scale, only or {})
    search_values, blocked = search_values or {}, blocked or {}
    cells = [replace(c, overrides={**c.overrides, **search_values[c.id]}) if c.id in search_values else c for c in cells]
    stale = [cell.id for cell in cells if is_stale(cell, sweep_dir / cell.id)]
    task_data: dict[str, TaskData] = {}

    def data_dir_of(cell: Cell) -> str | None:
        if data_root is None or DATA_DIR_KEY in cell.overrides:
            return None  # no data root, or the sweep file names this cell's folder itself
        task = task_of(cell, app, user_overrides)
        if task not in task_data:
            task_data[task] = resolve_task_data(data_root, str(task), app.conf_dir)
        return str(task_data[task].path)

    def run_overrides(cell: Cell, extra: dict[str, Any]) -> list[str]:
        return [*(format_override(k, v) for k, v in {**cell.overrides, **extra}.items()), *user_overrides]

    def existing_run_overrides(cell: Cell) -> list[str]:
        try:
            data_dir = data_dir_of(cell)
        except ValueError:  # no folder for its task: launching it (if pending) reports that
            data_dir = None
        return run_overrides(cell, {DATA_DIR_KEY: data_dir} if data_dir else {})

    # runs whose recorded result-relevant config is not what the cell composes to now
    existing = [cell for cell in cells if cell.id not in stale and (sweep_dir / cell.id / "fingerprint.json").is_file()]
    stale_why = run_config_changes(app, {cell.id: existing_run_overrides(cell) for cell in existing}, sweep_dir)
    stale += [cell.id for cell in cells if cell.id in stale_why]
    unlaunchable: dict[str, str] = {}
    pending = []
    for cell in pending_cells(cells, sweep_dir, set(stale)):
        problems = [f"NotAvailable: {need}" for need in cell.needs]
        problems += [p for p in (app.missing_option(k, v) for k, v in cell.overrides.items()) if p]
        if cell.id in blocked:
            problems.append(blocked[cell.id])
        if problems:
            unlaunchable[cell.id] = "; ".join(problems)
        else:
            pending.append(cell)
    data_dirs: dict[str, str] = {cell.id: d for cell in pending if (d := data_dir_of(cell))}
    use_wandb = wandb_selected(app, cells, user_overrides)
    configs: dict[str, dict[str, Any]] = {}
    singles: dict[str, list[str]] = {}
    python = app.command
    user_overrides = [*app.search_path_overrides(), *user_overrides]
    for cell in pending:
        extra = {SWEEP_NAME_KEY: sweep.name, SWEEP_SCALE_KEY: scale, SWEEP_CELL_KEY: cell.id}
        if use_wandb:
            extra.update({WANDB_GROUP_KEY: f"{sweep.name}-{scale}", WANDB_NAME_KEY: cell.id})
        if cell.id in data_dirs:
            extra[DATA_DIR_KEY] = data_dirs[cell.id]
        configs[cell.id] = cell_config(cell, app, extra)
        singles[cell.id] = [
            *python,
            *(format_override(k, v) for k, v in {**cell.overrides, **extra}.items()),
            "raise_on_failure=false",
            f"hydra.run.dir={sweep_dir / cell.id}",
            *user_overrides,
        ]
    command = [
        *python,
        "--multirun",
        "--config-name",
        app.config_name,
        "--config-dir",
        str(sweep_dir / CELLS_DIRNAME),
        f"+{CELL_GROUP}=" + ",".join(cell.id for cell in pending),
        f"hydra.sweep.dir={sweep_dir}",
        "raise_on_failure=false",
        *user_overrides,
    ]
    launch_info = {"sweep": sweep.name, "scale": scale, "data_root": str(data_root) if data_root else None,
                   "command_line_overrides": user_overrides}
    return LaunchPlan(sweep_dir, cells, pending, command, configs, singles, unlaunchable, app.workdir,
                      stale, data_root, task_data, launch_info, stale_why)


def write_cell_configs(plan: LaunchPlan) -> Path:
    """Write the generated per-cell configs; returns the folder put on Hydra's search path."""
    group_dir = plan.sweep_dir / CELLS_DIRNAME / CELL_GROUP
    group_dir.mkdir(parents=True, exist_ok=True)
    for cell_id, config in plan.cell_configs.items():
        text = "# @package _global_\n# generated by `python -m regbench.sweep run`; do not edit\n"
        text += OmegaConf.to_yaml(OmegaConf.create(config))
        write_text_atomic(group_dir / f"{cell_id}.yaml", text)
    return group_dir.parent


@dataclass
class RunSummary:
    """Cell counts after a launch (``launched`` = cells sent to Hydra this time)."""

    total: int
    skipped: int
    launched: int
    ok: list[str]
    failed: dict[str, str]
    missing: list[str]
    returncode: int = 0
    interrupted_by: int | None = None  # the signal that stopped the launch

    @property
    def all_ok(self) -> bool:
        return not self.failed and not self.missing


def execute(plan: LaunchPlan, env: dict[str, str] | None = None, echo: Callable[[str], None] = print) -> RunSummary:
    """Run the multirun of ``plan`` and record jobs that died without final metrics as failed.

    Holds the sweep dir's lock throughout (a concurrent ``run`` of the same sweep dir is refused).
    """
    returncode, interrupted_by = 0, None
    with DirLock(plan.sweep_dir, "sweep"):
        stale = set(plan.stale)
        by_id = {cell.id: cell for cell in plan.cells}
        for cell_id in [*plan.unlaunchable, *(cell.id for cell in plan.pending)]:
            run_dir = plan.sweep_dir / cell_id
            if cell_id in stale and run_dir.exists():
                echo(f"stale: {cell_id} was run with other settings; moved to {move_aside(run_dir).name}, "
                     f"launching it fresh")
            write_fingerprint(by_id[cell_id], run_dir, plan.launch_info)
        for cell_id, reason in plan.unlaunchable.items():
            _write_failed(plan.sweep_dir / cell_id, reason)
        if plan.pending:
            write_cell_configs(plan)
            echo("$ " + shlex.join(plan.command))
            started_at = time.time()
            returncode, interrupted_by = _run_with_progress(plan, env, echo, started_at)
            for cell in plan.pending:
                _mark_crashed(plan.sweep_dir / cell.id, started_at, returncode)
    summary = summarize(plan, returncode)
    summary.interrupted_by = interrupted_by
    return summary


# signals passed on to the multirun (SIGHUP, a closed terminal, stops it like SIGTERM)
FORWARDED = {signal.SIGTERM: signal.SIGTERM, signal.SIGINT: signal.SIGINT, signal.SIGHUP: signal.SIGTERM}


def run_stoppable(command: list[str], cwd: Path | None, env: dict[str, str],
                  echo: Callable[[str], None] = print,
                  tick: Callable[[], None] | None = None) -> tuple[int, int | None]:
    """Run ``command`` in its own process group and pass SIGTERM/SIGINT/SIGHUP on to the whole group.

    Returns (exit status, first signal received or None). A group still running
    :data:`STOP_GRACE_S` after the signal, or after a second one, is killed (SIGKILL); nothing of
    it outlives this call. ``tick`` is called every :data:`PROGRESS_INTERVAL_S` while it runs.
    """
    proc = subprocess.Popen(command, cwd=cwd, env=env, start_new_session=True)
    received: list[int] = []

    def forward(signum: int, frame: Any) -> None:
        received.append(signum)
        _signal_group(proc, FORWARDED.get(signum, signal.SIGTERM) if len(received) == 1 else signal.SIGKILL)

    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {signum: signal.signal(signum, forward) for signum in FORWARDED}
    try:
        deadline, last_tick = None, time.monotonic()
        while True:
            try:
                return proc.wait(timeout=0.5), (received[0] if received else None)
            except subprocess.TimeoutExpired:
                pass
            if tick is not None and time.monotonic() - last_tick >= PROGRESS_INTERVAL_S:
                tick()
                last_tick = time.monotonic()
            if received and deadline is None:
                deadline = time.monotonic() + STOP_GRACE_S
                echo(f"{signal.Signals(received[0]).name}: stopping the running jobs (they record 'interrupted')")
            if deadline is not None and time.monotonic() > deadline:
                echo(f"the jobs did not stop within {STOP_GRACE_S:.0f} s: killing them")
                _signal_group(proc, signal.SIGKILL)
                deadline = float("inf")
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if proc.poll() is None:
            _signal_group(proc, signal.SIGKILL)
            proc.wait()


def _signal_group(proc: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(proc.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


PROGRESS_INTERVAL_S = 5.0


def _run_with_progress(plan: LaunchPlan, env: dict[str, str] | None, echo: Callable[[str], None],
                       started_at: float) -> tuple[int, int | None]:
    """Run the multirun command stoppably (:func:`run_stoppable`); while it runs, print ``k/N done,
    failed, running, ETA`` whenever a cell starts or finishes (read from the run dirs, so it works
    for every launcher). Returns (exit status, first signal received or None)."""
    from regbench.sweep.progress import Progress

    label = f"{plan.launch_info.get('sweep', 'sweep')}/{plan.launch_info.get('scale', '')}".rstrip("/")
    progress = Progress(plan.pending, plan.sweep_dir, started_at, echo, label)
    result = run_stoppable(plan.command, plan.project_dir, _child_env(plan, env), echo, tick=progress.poll)
    progress.poll()
    return result


def _child_env(plan: LaunchPlan, env: dict[str, str] | None) -> dict[str, str]:
    """The jobs' environment: ours, with the checkout's src/ importable (the package need not be
    installed; launchers such as submitit pass the environment on to their workers)."""
    env = dict(os.environ if env is None else env)
    src = plan.project_dir / "src" if plan.project_dir else None
    if src is not None and (src / "regbench").is_dir():
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(src), env.get("PYTHONPATH", "")) if p)
    return env


def _mark_crashed(run_dir: Path, started_at: float, returncode: int) -> None:
    """A job that started this launch but left no final status gets ``status: failed``."""
    state = read_state(run_dir)
    if state.status not in ("missing", "running"):
        return
    marker = run_dir / ".hydra" / "overrides.yaml"
    if not marker.is_file() or marker.stat().st_mtime < started_at - 1:
        return  # never started (the launcher stopped first): stays missing, a resume launches it
    _write_failed(run_dir, f"JobCrashed: the job exited without final metrics (launcher exit code {returncode}); see {run_dir}")


def _write_failed(run_dir: Path, error: str) -> None:
    """Record ``status: failed`` with ``error`` in the run's metrics.json, keeping what is there."""
    run_dir.mkdir(parents=True, exist_ok=True)
    metrics = dict(read_state(run_dir).metrics or {})
    metrics.update(status="failed", error=error, output_dir=str(run_dir))
    metrics.setdefault("failed_step", None)
    write_json_atomic(run_dir / METRICS_FILE, metrics)


def summarize(plan: LaunchPlan, returncode: int = 0) -> RunSummary:
    ok, missing, failed = [], [], {}
    for cell in plan.cells:
        state = read_state(plan.sweep_dir / cell.id)
        if state.status == "ok":
            ok.append(cell.id)
        elif state.status == "failed":
            failed[cell.id] = state.error or "failed"
        else:
            missing.append(cell.id)
    return RunSummary(
        total=len(plan.cells),
        skipped=len(plan.cells) - len(plan.pending) - len(plan.unlaunchable),
        launched=len(plan.pending),
        ok=ok,
        failed=failed,
        missing=missing,
        returncode=returncode,
    )


def describe_plan(plan: LaunchPlan) -> str:
    """The ``--dry-run`` text: the multirun command, then one equivalent train.py line per job."""
    lines = [
        f"sweep dir: {plan.sweep_dir}",
        f"cells: {len(plan.cells)} total, {len(plan.cells) - len(plan.pending) - len(plan.unlaunchable)} done (skipped), "
        f"{len(plan.pending)} to launch" + (f" ({len(plan.stale)} stale)" if plan.stale else ""),
    ]
    for cell_id in plan.stale:
        lines.append(f"  stale {cell_id}: its run dir was made with other settings (fingerprint differs); "
                     f"it is moved to {cell_id}{STALE_SUFFIX}<n> and the cell runs fresh")
        if cell_id in plan.stale_why:
            lines.append("    " + plan.stale_why[cell_id].replace("\n", "\n    "))
    if plan.data_root is not None:
        lines.append(f"data root: {plan.data_root} (task.data_dir per task)")
        lines += [f"  {data.describe()}" for data in plan.task_data.values()]
    for cell_id, reason in plan.unlaunchable.items():
        lines.append(f"  not launched {cell_id} (recorded as failed): {reason}")
    if plan.pending:
        lines += ["", "multirun command:", "  " + shlex.join(plan.command), "", "jobs (equivalent single runs):"]
        lines += [f"  [{cell.id}]\n    " + shlex.join(plan.single_run_commands[cell.id]) for cell in plan.pending]
    return "\n".join(lines)
