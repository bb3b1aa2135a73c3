"""Command line of the sweep layer.

    python -m regbench.sweep list
    python -m regbench.sweep run <sweep> [--scale mini|full] [--dry-run] [--data-root DIR] [hydra overrides ...]
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
from regbench.sweep.launch import HydraApp, describe_plan, execute, plan_launch
from regbench.sweep.spec import Sweep, SweepSpecError, load_sweep


def default_project_dir() -> Path:
    """The checkout holding train.py: the working directory if it has one, else this package's."""
    cwd = Path.cwd()
    if (cwd / "train.py").is_file():
        return cwd
    return Path(__file__).resolve().parents[3]


def resolve_sweep(name_or_path: str, project_dir: Path) -> Sweep:
    path = Path(name_or_path)
    if not path.is_file():
        path = project_dir / "sweeps" / f"{name_or_path}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in (project_dir / "sweeps").glob("*.yaml"))
        raise SweepSpecError(f"no sweep {name_or_path!r}: not a file and not one of {known}")
    return load_sweep(path)


def sweep_dir_for(args: argparse.Namespace, sweep: Sweep) -> Path:
    if args.sweep_dir:
        return Path(args.sweep_dir).resolve()
    return (args.project_dir / "outputs" / "sweeps" / sweep.name / args.scale).resolve()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m regbench.sweep", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("sweep", help="sweep name under sweeps/ or path to a sweep yaml")
        p.add_argument("--scale", default="full", help="full (paper protocol) or mini (laptop CPU); default full")
        p.add_argument("--sweep-dir", help="output dir of this sweep+scale (default outputs/sweeps/<name>/<scale>)")
        p.add_argument("--project-dir", type=Path, default=None, help="checkout with train.py, conf/, sweeps/")

    run = sub.add_parser("run", help="launch the missing/failed cells as one Hydra multirun")
    common(run)
    run.add_argument("--dry-run", action="store_true", help="print the jobs, launch nothing")
    run.add_argument("--config-name", default="config", help="primary config of train.py")
    run.add_argument("--only", action="append", default=[], metavar="AXIS=LABEL[,LABEL]",
                     help="run only the cells with these labels on an axis (repeatable), e.g. --only task=glue/rte")
    run.add_argument("--data-root", default=None, metavar="DIR",
                     help=f"local data root (glue/RTE, clue/afqmc, d2t/e2e, ... as in ../shared/data): sets "
                          f"task.data_dir per task; default ${DATA_ROOT_ENV}; '' = none (hub)")
    run.epilog = "Any other argument is a Hydra override for every job, e.g. hydra/launcher=submitit_slurm."

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
    args.project_dir = (args.project_dir or default_project_dir()).resolve()
    try:
        if args.command == "list":
            return _list(args)
        sweep = resolve_sweep(args.sweep, args.project_dir)
        if args.command == "run":
            return _run(args, sweep)
        return _report(args, sweep)
    except (SweepSpecError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except DirLocked as exc:  # another `run` of this sweep dir is in progress
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _list(args: argparse.Namespace) -> int:
    for path in sorted((args.project_dir / "sweeps").glob("*.yaml")):
        sweep = load_sweep(path)
        counts = ", ".join(f"{scale}: {len(sweep.cells(scale))} runs" for scale in sweep.scales)
        print(f"{sweep.name:28s} {counts}  ({sweep.title})")
    return 0


def _run(args: argparse.Namespace, sweep: Sweep) -> int:
    app = HydraApp(args.project_dir / "train.py", config_name=args.config_name)
    only: dict[str, list[str]] = {}
    for item in args.only:
        axis, sep, labels = item.partition("=")
        if not sep or not labels:
            raise ValueError(f"--only {item!r}: expected AXIS=LABEL[,LABEL...]")
        only.setdefault(axis, []).extend(label.strip() for label in labels.split(","))
    data_root = args.data_root if args.data_root is not None else os.environ.get(DATA_ROOT_ENV, "")
    plan = plan_launch(sweep, args.scale, sweep_dir_for(args, sweep), app, args.overrides, only,
                       data_root=Path(data_root) if data_root else None)
    print(describe_plan(plan))
    if args.dry_run:
        return 0
    if not app.train_script.is_file():
        raise ValueError(f"no train.py at {app.train_script}; pass --project-dir")
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
