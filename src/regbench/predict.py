"""``regbench predict``: a finished run's predictions on a split, and GLUE's submission files.

Predictions go through the module's ``predict_step``, i.e. through the regularizer's own
prediction (LoRA Dropout's test-time ensemble included), on the run's tokenization settings.

- an evaluation split (``validation``, ``validation_matched`` ...): labelled, as in training;
- an unlabeled test split declared in ``task.test`` (GLUE: ``test``; MNLI: ``test_matched``,
  ``test_mismatched``, ``test_ax``): read from ``task.data_dir`` (the official layout) or the hub.

Writes ``<out>/<split>.jsonl`` (``index``, ``prediction`` as a label name or score, ``label_id``).
``submission_dir`` also writes the GLUE server's file for each test split: ``index<TAB>prediction``
with the official file name (``SST-2.tsv``, ``MNLI-m.tsv``, ``AX.tsv`` ...) and label values
(``task.test.submission`` / ``task.test.labels``); STS-B scores are clipped to the label range
[0, 5]. Zip the files of all tasks to submit.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from regbench.trained import TrainedRunError, load_trained_run

STSB_RANGE = (0.0, 5.0)


def _split_dataset(run: Any, split: str):
    """(raw dataset with ``index`` and text columns, whether it is an unlabeled test split)."""
    from regbench.data import load_task, load_test_split

    task = run.cfg.task
    if split in list(task.eval_splits) or split == "train":
        raw = load_task(task)[split]
        return raw.add_column("index", [str(i) for i in range(len(raw))]), False
    return load_test_split(task, split), True


def predict_split(run: Any, split: str, batch_size: int | None = None) -> list[dict[str, Any]]:
    """One row per example: ``index``, ``label_id`` (classification) and ``prediction``."""
    import lightning as L
    import torch
    from torch.utils.data import DataLoader

    from regbench.models import encoding_factory

    task = run.cfg.task
    if task.kind not in ("classification", "regression"):
        raise TrainedRunError(f"predict covers classification and regression tasks; {task.family}/{task.name} is "
                              f"{task.kind!r}: its run dir already holds predictions/<split>_step<step>.jsonl "
                              "written at every validation")
    raw, _ = _split_dataset(run, split)
    encoding = encoding_factory(run.cfg)(run.tokenizer, task, int(run.cfg.data.max_length))
    indices = list(raw["index"])
    encoded = raw.map(encoding.encode, batched=True, remove_columns=raw.column_names)
    loader = DataLoader(encoded, batch_size=int(batch_size or run.cfg.data.eval_batch_size), shuffle=False,
                        collate_fn=encoding.collate)
    trainer = L.Trainer(accelerator="auto", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False)
    logits = torch.cat([out.float().cpu() for out in trainer.predict(run.module, dataloaders=loader)])
    rows = []
    if task.kind == "regression":
        for index, score in zip(indices, logits.squeeze(-1).tolist()):
            rows.append({"index": index, "prediction": score})
    else:
        names = list(task.label_names)
        for index, label in zip(indices, logits.argmax(-1).tolist()):
            rows.append({"index": index, "label_id": label, "prediction": names[label]})
    return rows


def submission_value(task: Any, row: dict[str, Any]) -> str:
    """The GLUE server's value for one prediction."""
    labels = task.test.get("labels")
    if labels is None:
        low, high = STSB_RANGE
        return f"{min(max(row['prediction'], low), high):.3f}"
    return str(labels[row["label_id"]])


def write_predictions(run_dir: str | Path, splits: list[str], out_dir: str | Path | None = None,
                      submission_dir: str | Path | None = None, checkpoint: str = "best",
                      data_dir: str | None = None, allow_unfinished: bool = False) -> dict[str, Path]:
    """Predict ``splits`` with the run's model; returns the written files by name."""
    run = load_trained_run(run_dir, checkpoint, allow_unfinished)
    if data_dir is not None:
        run.cfg.task.data_dir = str(Path(data_dir).expanduser().resolve())
    task = run.cfg.task
    if submission_dir is not None:
        if task.family != "glue" or not task.get("test"):
            raise TrainedRunError(f"submission files are GLUE's; task {task.family}/{task.name} has none")
        splits = splits or list(task.test.submission)
        missing = [s for s in splits if s not in task.test.submission]
        if missing:
            raise TrainedRunError(f"--submission: {missing} are not GLUE test splits of {task.name} "
                                  f"({list(task.test.submission)})")
    if not splits:
        raise TrainedRunError("name the split(s) to predict (--split validation, --split test ...)")
    out_dir = Path(out_dir).expanduser() if out_dir else run.run_dir / "predictions"
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for split in splits:
        rows = predict_split(run, split)
        path = out_dir / f"{split}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        written[path.name] = path
        if submission_dir is not None:
            folder = Path(submission_dir).expanduser()
            folder.mkdir(parents=True, exist_ok=True)
            target = folder / task.test.submission[split]
            target.write_text("index\tprediction\n" + "".join(f"{r['index']}\t{submission_value(task, r)}\n" for r in rows))
            written[target.name] = target
    return written
