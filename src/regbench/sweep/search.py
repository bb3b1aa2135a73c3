"""Hyperparameter search per group of cells (Optuna, TPE), then the seeds run at the best point.

Papers tune the learning rate (and the method's rate) per method and task, then report seeds at
the chosen values. A sweep file's ``search`` block says so:

.. code-block:: yaml

    search:
      params:                                   # ranges searched for every group
        optim.lr: {low: 1.0e-5, high: 1.0e-4, log: true}
      per_value:                                # extra ranges for cells with this label on an axis
        regularizer:
          tlm: {regularizer.tlm.p: {low: 0.05, high: 0.5}}
      n_trials: {full: 20, mini: 2}             # or one number for every scale
      per: [backbone, regularizer, task]        # one search per combination (default: every axis but seed)
      sampler_seed: 0                           # TPE's seed
      trial_seed: null                          # run seed of the trials (default: the group's first cell's)
      parallel: 1                               # trials launched together (one multirun)

A *group* is the set of cells sharing their labels on the ``per`` axes (by default: the seeds of
one row/column). Its trials are ordinary runs of the group's first cell (its overrides, plus the
sampled values) in ``<sweep dir>/search/<group id>-<spec hash>/trial<n>/``, launched through the
same Hydra multirun as the cells (any launcher). The objective is the run's best main metric
(``metrics.json`` ``best[main_metric]``, maximized); a failed trial is told as failed. When a
group has ``n_trials`` finished trials, its cells run with the best trial's values, which become
part of their overrides (and of their fingerprint: a later, better trial makes them stale).

The studies live in ``<sweep dir>/search/search.db`` (Optuna's RDB storage on SQLite, SQLAlchemy
2), one study per group and search spec (ranges, base overrides, sampler seed: changing them starts
a new study in a new folder; raising ``n_trials`` continues the old one). After a crash the same
command continues: trials left ``RUNNING`` are launched again in their dirs (``resume=auto``
continues from their checkpoints) and then told. The sampler is re-seeded with
``sampler_seed + trial number`` before each suggestion, so a resumed search suggests what an
uninterrupted one would have, given the same results.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from regbench.sweep.spec import AxisValue, Cell, ReportSpec, Sweep, SweepSpecError, _id_part

SEARCH_KEYS = {"params", "per_value", "n_trials", "per", "sampler_seed", "trial_seed", "parallel"}
RANGE_KEYS = {"low", "high", "log", "step", "choices"}
SEARCH_DIRNAME = "search"
STORAGE_FILE = "search.db"
SPEC_VERSION = 1


@dataclass(frozen=True)
class ParamRange:
    """One searched key: ``choices`` (categorical) or ``[low, high]`` (int when both are ints)."""

    key: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple | None = None

    def suggest(self, trial: Any) -> Any:
        if self.choices is not None:
            return trial.suggest_categorical(self.key, list(self.choices))
        if isinstance(self.low, int) and isinstance(self.high, int) and not isinstance(self.step, float):
            return trial.suggest_int(self.key, self.low, self.high, step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.key, float(self.low), float(self.high), step=self.step, log=self.log)

    def as_dict(self) -> dict[str, Any]:
        if self.choices is not None:
            return {"choices": list(self.choices)}
        return {"low": self.low, "high": self.high, "log": self.log, "step": self.step}


@dataclass
class SearchSpec:
    params: dict[str, ParamRange]
    per_value: dict[str, dict[str, dict[str, ParamRange]]]
    n_trials: dict[str, int]
    per: list[str]
    sampler_seed: int = 0
    trial_seed: int | None = None
    parallel: int = 1


def _parse_range(key: str, raw: Any, where: str) -> ParamRange:
    if not isinstance(raw, dict):
        raise SweepSpecError(f"{where}.{key}: a range is {{low, high[, log, step]}} or {{choices: [...]}}")
    unknown = set(raw) - RANGE_KEYS
    if unknown:
        raise SweepSpecError(f"{where}.{key}: unknown key(s) {sorted(unknown)}; allowed: {sorted(RANGE_KEYS)}")
    if "choices" in raw:
        if set(raw) != {"choices"} or not isinstance(raw["choices"], list) or not raw["choices"]:
            raise SweepSpecError(f"{where}.{key}.choices must be a non-empty list (and alone)")
        return ParamRange(key, choices=tuple(raw["choices"]))
    low, high = raw.get("low"), raw.get("high")
    number = (int, float)
    if not isinstance(low, number) or not isinstance(high, number) or isinstance(low, bool) or isinstance(high, bool):
        raise SweepSpecError(f"{where}.{key}: low and high must be numbers (got {low!r}, {high!r})")
    if not low < high:
        raise SweepSpecError(f"{where}.{key}: low={low} must be below high={high}")
    log = raw.get("log", False)
    if not isinstance(log, bool):
        raise SweepSpecError(f"{where}.{key}.log must be true or false")
    if log and low <= 0:
        raise SweepSpecError(f"{where}.{key}: a log range needs low > 0 (got {low})")
    step = raw.get("step")
    if step is not None and (not isinstance(step, number) or step <= 0 or (log and step)):
        raise SweepSpecError(f"{where}.{key}.step must be a positive number, and not combined with log")
    return ParamRange(key, low, high, log, step)


def _parse_ranges(raw: Any, where: str) -> dict[str, ParamRange]:
    from regbench.sweep.spec import _parse_overrides  # same key rules as every override

    mapping = _parse_overrides(raw or {}, where)
    return {key: _parse_range(key, value, where) for key, value in mapping.items()}


def parse_search(raw: Any, axes: dict[str, list[AxisValue]], scales: dict[str, dict[str, Any]],
                 where: str) -> SearchSpec | None:
    """The sweep file's ``search`` block (None when absent); errors name the key."""
    if raw is None:
        return None
    where = f"{where}: search"
    if not isinstance(raw, dict):
        raise SweepSpecError(f"{where} must be a mapping")
    unknown = set(raw) - SEARCH_KEYS
    if unknown:
        raise SweepSpecError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(SEARCH_KEYS)}")
    params = _parse_ranges(raw.get("params"), f"{where}.params")
    labels = {axis: {v.label for v in values} | {v.label for s in scales.values() for v in s["axes"].get(axis, [])}
              for axis, values in axes.items()}
    per_value: dict[str, dict[str, dict[str, ParamRange]]] = {}
    for axis, by_label in (raw.get("per_value") or {}).items():
        if axis not in axes or not isinstance(by_label, dict):
            raise SweepSpecError(f"{where}.per_value.{axis}: not an axis of this sweep ({sorted(axes)})")
        for label, ranges in by_label.items():
            if str(label) not in labels[axis]:
                raise SweepSpecError(f"{where}.per_value.{axis}.{label}: not a label of {axis!r}; labels: {sorted(labels[axis])}")
            per_value.setdefault(axis, {})[str(label)] = _parse_ranges(ranges, f"{where}.per_value.{axis}.{label}")
    if not params and not per_value:
        raise SweepSpecError(f"{where}: nothing to search (give params or per_value ranges)")
    n_raw = raw.get("n_trials")
    n_trials = {scale: n_raw for scale in scales} if isinstance(n_raw, int) else n_raw
    if not isinstance(n_trials, dict) or set(n_trials) != set(scales) or \
            any(not isinstance(n, int) or isinstance(n, bool) or n < 1 for n in n_trials.values()):
        raise SweepSpecError(f"{where}.n_trials must be a number >= 1 or one per scale {sorted(scales)} (got {n_raw!r})")
    per = raw.get("per", [a for a in axes if a != "seed"])
    if not isinstance(per, list) or any(a not in axes for a in per):
        raise SweepSpecError(f"{where}.per must be a list of axis names from {sorted(axes)}")
    ints = {"sampler_seed": raw.get("sampler_seed", 0), "parallel": raw.get("parallel", 1)}
    for key, value in ints.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < (1 if key == "parallel" else 0):
            raise SweepSpecError(f"{where}.{key} must be an integer >= {1 if key == 'parallel' else 0} (got {value!r})")
    trial_seed = raw.get("trial_seed")
    if trial_seed is not None and (not isinstance(trial_seed, int) or isinstance(trial_seed, bool)):
        raise SweepSpecError(f"{where}.trial_seed must be an integer or null")
    return SearchSpec(params, per_value, dict(n_trials), list(per), ints["sampler_seed"], trial_seed, ints["parallel"])


# -- groups ------------------------------------------------------------------------------------

@dataclass
class SearchGroup:
    """The cells that share one search, the ranges searched and the overrides its trials run with."""

    id: str
    cells: list[Cell]
    params: dict[str, ParamRange]
    base: dict[str, Any]
    spec_hash: str = ""

    def study_name(self, sweep: Sweep, scale: str) -> str:
        return f"{sweep.name}/{scale}/{self.id}/{self.spec_hash}"

    def folder(self, sweep_dir: Path) -> Path:
        return sweep_dir / SEARCH_DIRNAME / f"{self.id}-{self.spec_hash}"


def search_groups(sweep: Sweep, scale: str, cells: list[Cell] | None = None) -> list[SearchGroup]:
    """The groups holding any of ``cells`` (default: all), in launch order. Groups are formed over
    the whole grid, so ``--only`` never changes a group's trials (its first cell)."""
    spec: SearchSpec = sweep.search
    axes = sweep.axes_for(scale)
    wanted = None if cells is None else {c.id for c in cells}
    cells = sweep.cells(scale)
    groups: dict[str, SearchGroup] = {}
    for cell in cells:
        group_id = "__".join(_id_part(axis, cell.labels[axis]) for axis in axes if axis in spec.per) or "all"
        if group_id not in groups:
            params = dict(spec.params)
            for axis, by_label in spec.per_value.items():
                params.update(by_label.get(cell.labels[axis], {}))
            base = dict(cell.overrides)
            if spec.trial_seed is not None:
                base["seed"] = spec.trial_seed
            payload = {"version": SPEC_VERSION, "params": {k: r.as_dict() for k, r in sorted(params.items())},
                       "base": base, "sampler_seed": spec.sampler_seed}
            digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=repr).encode()).hexdigest()[:8]
            groups[group_id] = SearchGroup(group_id, [], params, base, digest)
        groups[group_id].cells.append(cell)
    return [g for g in groups.values() if wanted is None or any(c.id in wanted for c in g.cells)]


def _storage(sweep_dir: Path, create: bool):
    """Optuna's RDB storage on ``<sweep dir>/search/search.db`` (None if absent and not ``create``)."""
    path = sweep_dir / SEARCH_DIRNAME / STORAGE_FILE
    if not create and not path.is_file():
        return None
    import optuna

    path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.RDBStorage(f"sqlite:///{path}")


def _quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


@dataclass
class GroupState:
    """A group's study as stored: finished trials, the best one, and whether the search is done."""

    group: SearchGroup
    n_trials: int
    finished: int = 0
    running: int = 0
    best_value: float | None = None
    best_params: dict[str, Any] | None = None
    best_trial: int | None = None

    @property
    def done(self) -> bool:
        return self.finished >= self.n_trials

    def describe(self, sweep_dir: Path) -> str:
        if not self.group.params:
            return f"search {self.group.id}: nothing to search (no ranges for these cells)"
        text = f"search {self.group.id}: {self.finished}/{self.n_trials} trials finished"
        if self.running:
            text += f", {self.running} running"
        if self.best_params is not None:
            text += f"; best {self.best_value:.4f} (trial {self.best_trial}) at " + \
                    ", ".join(f"{k}={v}" for k, v in self.best_params.items())
        return text + f"  [{self.group.folder(sweep_dir)}]"


def _empty_state(group: SearchGroup, n_trials: int) -> GroupState:
    """A group not searched yet; a group with no ranges is done at once (it runs as declared)."""
    return GroupState(group, n_trials) if group.params else GroupState(group, 0, best_params={})


def _state(study: Any, group: SearchGroup, n_trials: int) -> GroupState:
    from optuna.trial import TrialState

    state = GroupState(group, n_trials)
    trials = study.get_trials(deepcopy=False)
    state.finished = sum(t.state in (TrialState.COMPLETE, TrialState.FAIL) for t in trials)
    state.running = sum(t.state == TrialState.RUNNING for t in trials)
    if any(t.state == TrialState.COMPLETE for t in trials):
        best = study.best_trial
        state.best_value, state.best_params, state.best_trial = best.value, dict(best.params), best.number
    return state


def read_states(sweep: Sweep, scale: str, sweep_dir: Path, groups: list[SearchGroup] | None = None) -> list[GroupState]:
    """Every group's search state, read only (no storage is created)."""
    groups = search_groups(sweep, scale) if groups is None else groups
    n_trials = sweep.search.n_trials[scale]
    storage = _storage(sweep_dir, create=False)
    if storage is None:
        return [_empty_state(g, n_trials) for g in groups]
    import optuna

    _quiet_optuna()
    names = {s.study_name for s in optuna.study.get_all_study_summaries(storage)}
    states = []
    for group in groups:
        name = group.study_name(sweep, scale)
        if name in names and group.params:
            states.append(_state(optuna.load_study(study_name=name, storage=storage), group, n_trials))
        else:
            states.append(_empty_state(group, n_trials))
    return states


@dataclass
class SearchOutcome:
    """Per cell: the best values to run it at, or why it cannot run yet."""

    best_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    blocked: dict[str, str] = field(default_factory=dict)
    states: list[GroupState] = field(default_factory=list)


def outcome_of(states: list[GroupState], sweep_dir: Path) -> SearchOutcome:
    outcome = SearchOutcome(states=states)
    for state in states:
        for cell in state.group.cells:
            if state.done and state.best_params is not None:
                outcome.best_params[cell.id] = state.best_params
            elif state.done:
                outcome.blocked[cell.id] = (f"SearchFailed: every one of the {state.finished} trials of search "
                                            f"{state.group.id} failed; see {state.group.folder(sweep_dir)}")
            else:
                outcome.blocked[cell.id] = (f"SearchPending: search {state.group.id} has {state.finished}/"
                                            f"{state.n_trials} finished trials; `run` finishes it first")
    return outcome


def cells_at_best(sweep: Sweep, scale: str, sweep_dir: Path, cells: list[Cell] | None = None) -> list[Cell]:
    """The cells with their group's best values merged into their overrides (what was launched and
    fingerprinted); cells of unfinished searches keep their own. Without a search: the cells."""
    cells = sweep.cells(scale) if cells is None else cells
    if getattr(sweep, "search", None) is None:
        return cells
    best = outcome_of(read_states(sweep, scale, sweep_dir, search_groups(sweep, scale, cells)), sweep_dir).best_params
    return [with_values(cell, best[cell.id]) if cell.id in best else cell for cell in cells]


def with_values(cell: Cell, values: dict[str, Any]) -> Cell:
    return replace(cell, overrides={**cell.overrides, **values})


# -- running -----------------------------------------------------------------------------------

def _trial_sweep(sweep: Sweep, scale: str, group: SearchGroup, trials: dict[int, dict[str, Any]]) -> Sweep:
    """A one-axis sweep whose cells are ``trial<n>`` runs, so trials go through the same launch
    path as cells (generated configs, any Hydra launcher, crash marking, fingerprints)."""
    values = [AxisValue(f"trial{n}", {**group.base, **params}) for n, params in sorted(trials.items())]
    report = ReportSpec(rows=["trial"], column="trial", metrics={})
    return Sweep(name=f"{sweep.name}-search-{group.id}", title=f"search {group.id}", paper="", axes={"trial": values},
                 fixed={}, scales={scale: {"description": "", "fixed": {}, "axes": {}}}, report=report)


def _objective(run_dir: Path) -> float | None:
    """The trial's best main metric (``metrics.json``), None if it did not finish ok."""
    from regbench.sweep.launch import read_state

    state = read_state(run_dir)
    metrics = state.metrics or {}
    value = (metrics.get("best") or {}).get(metrics.get("main_metric"))
    if state.status != "ok" or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def run_searches(sweep: Sweep, scale: str, sweep_dir: Path, app: Any, user_overrides: list[str],
                 cells: list[Cell], data_root: Path | None = None, env: dict[str, str] | None = None,
                 echo: Callable[[str], None] = print, dry_run: bool = False) -> SearchOutcome:
    """Run every unfinished search of ``cells``' groups to ``n_trials`` finished trials; returns
    the best values per cell (``dry_run``: only reads and prints the state)."""
    groups = search_groups(sweep, scale, cells)
    if dry_run:
        states = read_states(sweep, scale, sweep_dir, groups)
        echo("\n".join(s.describe(sweep_dir) for s in states))
        return outcome_of(states, sweep_dir)
    import optuna

    _quiet_optuna()
    storage = _storage(sweep_dir, create=True)
    n_trials = sweep.search.n_trials[scale]
    states = []
    for group in groups:
        if not group.params:
            states.append(_empty_state(group, n_trials))
            continue
        study = optuna.create_study(study_name=group.study_name(sweep, scale), storage=storage,
                                    direction="maximize", load_if_exists=True)
        while True:
            state = _state(study, group, n_trials)
            batch = _next_batch(study, group, state, sweep.search)
            if not batch:
                break
            echo(f"{state.describe(sweep_dir)}\n  launching {', '.join(f'trial{n}' for n in batch)}")
            _launch_trials(sweep, scale, group, batch, sweep_dir, app, user_overrides, data_root, env, echo)
            for number in batch:
                value = _objective(group.folder(sweep_dir) / f"trial{number}")
                if value is None:
                    study.tell(number, state=optuna.trial.TrialState.FAIL)
                else:
                    study.tell(number, value)
        states.append(state)
        echo(state.describe(sweep_dir))
    return outcome_of(states, sweep_dir)


def _next_batch(study: Any, group: SearchGroup, state: GroupState, spec: SearchSpec) -> dict[int, dict[str, Any]]:
    """Trials to launch now: those left RUNNING by a crashed driver (re-run in their dirs), then
    new ones up to ``parallel`` and the trial budget, each suggested by a freshly seeded TPE."""
    import optuna
    from optuna.trial import TrialState

    batch = {t.number: dict(t.params) for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    while len(batch) < spec.parallel and state.finished + len(batch) < state.n_trials:
        number = len(study.get_trials(deepcopy=False))
        study.sampler = optuna.samplers.TPESampler(seed=spec.sampler_seed + number, constant_liar=spec.parallel > 1)
        trial = study.ask()
        batch[trial.number] = {key: spec_range.suggest(trial) for key, spec_range in group.params.items()}
    return batch


def _launch_trials(sweep: Sweep, scale: str, group: SearchGroup, batch: dict[int, dict[str, Any]], sweep_dir: Path,
                   app: Any, user_overrides: list[str], data_root: Path | None, env: dict[str, str] | None,
                   echo: Callable[[str], None]) -> None:
    from regbench.sweep.launch import execute, plan_launch

    trials = _trial_sweep(sweep, scale, group, batch)
    plan = plan_launch(trials, scale, group.folder(sweep_dir), app, user_overrides, data_root=data_root)
    for cell_id, reason in plan.unlaunchable.items():
        echo(f"  cannot launch {cell_id}: {reason}")
    execute(plan, env=env, echo=echo)
