"""Command line of the sweep layer.

    python -m regbench.sweep list
    python -m regbench.sweep run <sweep> [--scale mini|full] [--dry-run] [--data-root DIR] [--detach] [hydra overrides ...]
    python -m regbench.sweep status <sweep> [--scale mini|full]
    python -m regbench.sweep report <sweep> [--scale mini|full] [--out DIR]

``<sweep>`` is a name under ``sweeps/`` (``tlm_glue``) or a path to a sweep file. Runs go to
``<project>/outputs/sweeps/<name>/<scale>/<cell id>/`` unless ``--sweep-dir`` says otherwise.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from regbench.lock import DirLocked
from regbench.sweep.data_root import ENV_VAR as DATA_ROOT_ENV
from regbench.sweep.launch import HydraApp, describe_plan, execute, plan_launch, select_cells
from regbench.sweep.spec import Sweep, SweepSpecError, load_sweep


PACKAGED_SWEEPS = Path(__file__).resolve().parents[1] / "sweeps"  # shipped with the package


def default_project_dir() -> Path | None:
    """The checkout holding train.py: the working directory if it has one, else the checkout this
    package runs from; None for an installed package (its shipped app, configs and sweeps)."""
    for candidate in (Path.cwd(), Path(__file__).resolve().parents[3]):
        if (candidate / "train.py").is_file():
            return candidate
    return None


def sweeps_dir(project_dir: Path | None) -> Path:
    if project_dir is not None and (project_dir / "sweeps").is_dir():
        return project_dir / "sweeps"
    return PACKAGED_SWEEPS


def resolve_sweep(name_or_path: str, project_dir: Path | None) -> Sweep:
    path = Path(name_or_path)
    if not path.is_file():
        path = sweeps_dir(project_dir) / f"{name_or_path}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in sweeps_dir(project_dir).glob("*.yaml"))
        raise SweepSpecError(f"no sweep {name_or_path!r}: not a file and not one of {known}")
    return load_sweep(path)


def sweep_dir_for(args: argparse.Namespace, sweep: Sweep) -> Path:
    if args.sweep_dir:
        return Path(args.sweep_dir).resolve()
    return ((args.project_dir or Path.cwd()) / "outputs" / "sweeps" / sweep.name / args.scale).resolve()


def app_for(args: argparse.Namespace) -> HydraApp:
    """train.py of the checkout, or the installed package's app; plus the user's config folders."""
    script = args.project_dir / "train.py" if args.project_dir is not None else None
    if script is not None and not script.is_file():
        raise ValueError(f"no train.py at {script}; pass --project-dir (a checkout) or run from one")
    extra = tuple(Path(d).expanduser().resolve() for d in args.config_dir)
    missing = [str(d) for d in extra if not d.is_dir()]
    if missing:
        raise ValueError(f"--config-dir {missing[0]}: no such folder")
    return HydraApp(script, config_name=args.config_name, extra_conf_dirs=extra)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m regbench.sweep", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("sweep", help="sweep name under sweeps/ or path to a sweep yaml")
        p.add_argument("--scale", default="full", help="full (paper protocol) or mini (laptop CPU); default full")
        p.add_argument("--sweep-dir", help="output dir of this sweep+scale (default outputs/sweeps/<name>/<scale>)")
        p.add_argument("--project-dir", type=Path, default=None,
                       help="checkout with train.py, conf/, sweeps/ (default: the current one; none: the installed package)")

    run = sub.add_parser("run", help="launch the missing/failed cells as one Hydra multirun")
    common(run)
    run.add_argument("--dry-run", action="store_true", help="print the jobs, launch nothing")
    run.add_argument("--config-name", default="config", help="primary config of train.py")
    run.add_argument("--config-dir", action="append", default=[], metavar="DIR",
                     help="your own config folder (groups/options beside the shipped ones), repeatable")
    run.add_argument("--only", action="append", default=[], metavar="AXIS=LABEL[,LABEL]",
                     help="run only the cells with these labels on an axis (repeatable), e.g. --only task=glue/rte")
    run.add_argument("--data-root", default=None, metavar="DIR",
                     help=f"local data root (glue/RTE, clue/afqmc, d2t/e2e, ... as in ../shared/data): sets "
                          f"task.data_dir per task; default ${DATA_ROOT_ENV}; '' = none (hub)")
    run.add_argument("--detach", action="store_true",
                     help="submit this command as a small SLURM job (the sweep driver) and return at once; "
                          "needs launcher=slurm for the cells (see docs/cluster.md)")
    run.add_argument("--driver-time", type=int, default=2880, metavar="MIN",
                     help="--detach: the driver job's time limit in minutes (it waits for every cell; default 2880)")
    run.add_argument("--driver-partition", default=os.environ.get("SLURM_PARTITION"),
                     help="--detach: partition of the driver job (default $SLURM_PARTITION)")
    run.add_argument("--driver-account", default=os.environ.get("SLURM_ACCOUNT"),
                     help="--detach: account (default $SLURM_ACCOUNT)")
    run.add_argument("--driver-qos", default=os.environ.get("SLURM_QOS"), help="--detach: QOS (default $SLURM_QOS)")
    run.add_argument("--driver-setup", action="append", default=[], metavar="LINE",
                     help="--detach: a shell line run before the driver (repeatable), e.g. 'source .venv/bin/activate'")
    run.epilog = "Any other argument is a Hydra override for every job, e.g. hydra/launcher=submitit_slurm."

    status = sub.add_parser("status", help="print each cell's state (ok/failed/running/missing/stale); writes nothing")
    common(status)

    report = sub.add_parser("report", help="write Markdown/CSV/LaTeX tables and a PNG plot")
    common(report)
    report.add_argument("--out", help="output folder (default <sweep dir>/report)")

    lst = sub.add_parser("list", help="list the sweeps and their cell counts per scale")
    lst.add_argument("--project-dir", type=Path, default=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    # Hydra overrides (key=value, group=option, ~key, +key=value) may sit anywhere after `run`.
    bad = [a for a in rest if a.startswith("-") or args.command != "run"]
    if bad:
        parser.error(f"unrecognized arguments: {' '.join(bad)}")
    args.overrides = rest
    args.project_dir = args.project_dir.resolve() if args.project_dir else default_project_dir()
    try:
        if args.command == "list":
            return _list(args)
        sweep = resolve_sweep(args.sweep, args.project_dir)
        if args.command == "run":
            return _run(args, sweep)
        if args.command == "status":
            return _status(args, sweep)
        return _report(args, sweep)
    except (SweepSpecError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except DirLocked as exc:  # another `run` of this sweep dir is in progress
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _list(args: argparse.Namespace) -> int:
    for path in sorted(sweeps_dir(args.project_dir).glob("*.yaml")):
        sweep = load_sweep(path)
        counts = ", ".join(f"{scale}: {len(sweep.cells(scale))} runs" for scale in sweep.scales)
        print(f"{sweep.name:28s} {counts}  ({sweep.title})")
    return 0


def _run(args: argparse.Namespace, sweep: Sweep) -> int:
    app = app_for(args)
    only: dict[str, list[str]] = {}
    for item in args.only:
        axis, sep, labels = item.partition("=")
        if not sep or not labels:
            raise ValueError(f"--only {item!r}: expected AXIS=LABEL[,LABEL...]")
        only.setdefault(axis, []).extend(label.strip() for label in labels.split(","))
    data_root = args.data_root if args.data_root is not None else os.environ.get(DATA_ROOT_ENV, "")
    root = Path(data_root) if data_root else None
    sweep_dir = sweep_dir_for(args, sweep)
    plan = plan_launch(sweep, args.scale, sweep_dir, app, args.overrides, only, data_root=root)
    if args.detach and not args.dry_run:  # the driver job does everything below, searches included
        print(describe_plan(plan))
        return _detach(args, sweep, plan.sweep_dir, str(plan.data_root or ""))
    if sweep.search is not None:
        from regbench.sweep.search import run_searches

        outcome = run_searches(sweep, args.scale, sweep_dir, app, args.overrides, select_cells(sweep, args.scale, only),
                               data_root=root, env=dict(os.environ), dry_run=args.dry_run)
        plan = plan_launch(sweep, args.scale, sweep_dir, app, args.overrides, only, data_root=root,
                           search_values=outcome.best_params, blocked=outcome.blocked)
    print(describe_plan(plan))
    if args.dry_run:
        return 0
    summary = execute(plan, env=dict(os.environ))
    print(
        f"\n{sweep.name} ({args.scale}): {len(summary.ok)}/{summary.total} ok, {len(summary.failed)} failed, "
        f"{len(summary.missing)} missing; {summary.skipped} skipped as done, {summary.launched} launched"
    )
    for cell_id, error in summary.failed.items():
        print(f"  failed {cell_id}: {error}")
    if summary.missing:
        print("  missing cells are launched again by re-running this command (resume)")
    if summary.interrupted_by is not None:
        print(f"stopped by {signal.Signals(summary.interrupted_by).name}; re-run this command to resume")
        return 128 + summary.interrupted_by
    return 0 if summary.all_ok else 1


def _report(args: argparse.Namespace, sweep: Sweep) -> int:
    from regbench.sweep.report import write_report  # matplotlib stays out of `run`

    sweep_dir = sweep_dir_for(args, sweep)
    paths = write_report(sweep, args.scale, sweep_dir, Path(args.out).resolve() if args.out else None,
                         warn=lambda line: print(f"warning: {line}", file=sys.stderr))
    print(paths["md"].read_text())
    print("written: " + ", ".join(str(p) for p in paths.values()))
    return 0


SLURM_LAUNCHER_OVERRIDES = ("launcher=slurm", "hydra/launcher=submitit_slurm")


def _detach(args: argparse.Namespace, sweep: Sweep, sweep_dir: Path, data_root: str) -> int:
    """Submit this very command (without ``--detach``) as the sweep's driver job; see :mod:`.detach`."""
    from regbench.sweep.detach import submit_driver

    if not any(o.lstrip("+") in SLURM_LAUNCHER_OVERRIDES for o in args.overrides):
        raise ValueError("--detach submits only the sweep driver: the cells need launcher=slurm too "
                         "(else they would train inside the driver's 1-CPU job)")
    argv = ["run", str(Path(args.sweep).resolve()) if Path(args.sweep).is_file() else args.sweep,
            "--scale", args.scale, "--sweep-dir", str(sweep_dir),
            *(["--project-dir", str(args.project_dir)] if args.project_dir else []),
            "--config-name", args.config_name, "--data-root", data_root,
            *(f"--config-dir={d}" for d in args.config_dir),
            *(f"--only={item}" for item in args.only), *args.overrides]
    job = submit_driver(argv, sweep_dir, f"regbench-sweep-{sweep.name}-{args.scale}", args.driver_time,
                        args.driver_partition, args.driver_account, args.driver_qos, args.driver_setup)
    print(f"submitted the sweep driver as SLURM job {job.job_id}; it submits the cells and waits for them.\n"
          f"  state of the cells: python -m regbench.sweep status {args.sweep} --scale {args.scale}"
          f"{' --sweep-dir ' + str(sweep_dir) if args.sweep_dir else ''}\n"
          f"  driver log:         {job.log}\n"
          f"  cancel:             scancel {job.job_id} (running cells keep running; cancel them too before a re-run)")
    return 0


def _status(args: argparse.Namespace, sweep: Sweep) -> int:
    from regbench.sweep.progress import cell_status, format_status

    sweep_dir = sweep_dir_for(args, sweep)
    if sweep.search is not None:
        from regbench.sweep.search import read_states

        print("\n".join(state.describe(sweep_dir) for state in read_states(sweep, args.scale, sweep_dir)))
    from regbench.sweep.search import cells_at_best

    statuses = [cell_status(cell, sweep_dir) for cell in cells_at_best(sweep, args.scale, sweep_dir)]
    print(format_status(statuses, f"{sweep.name} ({args.scale}) in {sweep_dir}"))
    return 0
