"""The ``regbench`` command (installed as a console script; also ``python -m regbench``).

    regbench train [hydra overrides ...]          # = python train.py ...  (-m, --cfg job, --config-dir DIR)
    regbench sweep run|status|report|list ...     # = python -m regbench.sweep ...
    regbench export RUN_DIR OUT_DIR [--checkpoint best|last|PATH] [--lora merged|adapter]
    regbench predict RUN_DIR --split SPLIT [--split ...] [--out DIR] [--glue-submission DIR] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

USAGE = __doc__.split("\n\n", 1)[1]


def _export(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="regbench export",
                                     description="a finished run as a Hugging Face model folder (model, tokenizer, model card)")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--checkpoint", default="best", help="best (default), last, or a .ckpt path")
    parser.add_argument("--lora", default="merged", choices=["merged", "adapter"],
                        help="PEFT runs: merge the adapters into the weights (default) or save the adapter folder")
    parser.add_argument("--allow-unfinished", action="store_true", help="export a run whose status is not ok")
    parser.add_argument("--no-verify", action="store_true",
                        help="skip the reload check (it reads a few rows of the task's validation data)")
    args = parser.parse_args(argv)
    from regbench.export import export_run

    notes = export_run(args.run_dir, args.out_dir, args.checkpoint, args.lora, args.allow_unfinished,
                       verify=not args.no_verify)
    print(f"exported {args.run_dir} ({Path(notes['checkpoint']).name}) to {args.out_dir.resolve()}")
    if notes["prediction_differs"]:
        print("note: the run was evaluated through its regularizer's own prediction (e.g. a test-time ensemble); "
              "the exported plain model's outputs differ (see README.md there)", file=sys.stderr)
    return 0


def _predict(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="regbench predict", description="predict a split with a finished run")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--split", action="append", default=[],
                        help="validation (any eval split) or an unlabeled test split (GLUE: test; MNLI: test_matched, "
                             "test_mismatched, test_ax); repeatable")
    parser.add_argument("--out", type=Path, help="folder for <split>.jsonl (default <run dir>/predictions)")
    parser.add_argument("--glue-submission", type=Path, metavar="DIR",
                        help="also write the GLUE server's file(s) (SST-2.tsv, MNLI-m.tsv, ...); default splits: all test splits")
    parser.add_argument("--data-dir", help="the task's local data folder, if not the one the run trained on")
    parser.add_argument("--checkpoint", default="best", help="best (default), last, or a .ckpt path")
    parser.add_argument("--allow-unfinished", action="store_true")
    args = parser.parse_args(argv)
    from regbench.predict import write_predictions

    written = write_predictions(args.run_dir, args.split, args.out, args.glue_submission, args.checkpoint,
                                args.data_dir, args.allow_unfinished)
    for path in written.values():
        print(f"written: {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(f"usage:\n{USAGE}")
        return 0
    command, rest = argv[0], argv[1:]
    if command == "train":
        from regbench import app

        sys.argv[0] = app.__file__  # DDP ranks re-run sys.argv[0]: this app, not the `regbench` dispatcher
        app.main(rest)
        return 0
    if command == "sweep":
        from regbench.sweep.cli import main as sweep_main

        return sweep_main(rest)
    if command not in ("export", "predict"):
        print(f"regbench: unknown command {command!r}\nusage:\n{USAGE}", file=sys.stderr)
        return 2
    from regbench.data import DataError
    from regbench.trained import TrainedRunError

    try:
        return _export(rest) if command == "export" else _predict(rest)
    except (TrainedRunError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
