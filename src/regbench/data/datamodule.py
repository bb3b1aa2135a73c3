"""One LightningDataModule for every task: load (the task's loader), tokenize once (disk cache), batch.

Tokenized splits are saved under ``data.cache_dir/tokenized/<key>`` where the key hashes the task
spec, the local files' sizes and mtimes, the tokenizer, ``max_length`` and the row limits, so the
runs of a sweep tokenize a task once. Batches are padded dynamically to their longest row.

The cache is written to a temp folder and renamed (:func:`regbench.atomic.atomic_dir`), with
umask permissions (a cache shared by a group stays readable), and holds a manifest
(``regbench_cache.json``: row counts, file sizes, the rows the loader skipped). A cache folder whose
files do not match its manifest or that ``datasets`` cannot load (truncated, emptied, edited) is
discarded with a warning and rebuilt from the task's files.

Evaluation rows carry ``example_id`` (their row index): under DDP the distributed sampler pads
shards with repeated rows, and the modules drop those repeats by id before scoring.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, RandomSampler

from regbench.atomic import atomic_dir, write_json_atomic
from regbench.data import collect_skips, load_task
from regbench.logs import quiet_progress_bars

log = logging.getLogger("regbench")
MANIFEST = "regbench_cache.json"


def _local_file_stats(task_cfg: Any) -> list:
    if not task_cfg.get("data_dir"):
        return []
    root = Path(task_cfg.data_dir).expanduser()
    return sorted(
        (str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()
    )


class EpochSeededSampler(RandomSampler):
    """Random order drawn from ``(seed, epoch)`` alone (Lightning calls ``set_epoch`` every epoch).

    Epoch k sees the same order whether the run started at epoch 0 or resumed from a checkpoint,
    and no global RNG is consumed. A ``RandomSampler`` so that Lightning knows the loader shuffles
    (under DDP it swaps in a ``DistributedSampler`` seeded with the same run seed).
    """

    def __init__(self, data_source: Any, seed: int):
        super().__init__(data_source)
        self.seed, self.epoch = int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        yield from torch.randperm(len(self.data_source), generator=generator).tolist()


class TaskDataModule(L.LightningDataModule):
    """Train loader (shuffled with the run's seed) and one eval loader per ``task.eval_splits``;
    ``encoding`` is the task kind's factory ``fn(tokenizer, task_cfg, max_length) -> Encoding``."""

    def __init__(self, task_cfg: Any, data_cfg: Any, tokenizer: Any, seed: int = 0, *, encoding: Any):
        super().__init__()
        self.task_cfg, self.data_cfg, self.tokenizer, self.seed = task_cfg, data_cfg, tokenizer, seed
        self.encoding = encoding(tokenizer, task_cfg, int(data_cfg.max_length))
        self.eval_splits = list(task_cfg.eval_splits)
        self.datasets = None
        self.skipped: list[dict[str, Any]] = []  # rows the loader left out (counted, logged)

    # -- caching ------------------------------------------------------------------------------
    def cache_key(self) -> str:
        tok = self.tokenizer
        spec = {
            "task": OmegaConf.to_container(self.task_cfg, resolve=True),
            "files": _local_file_stats(self.task_cfg),
            "tokenizer": [type(tok).__name__, getattr(tok, "name_or_path", ""), len(tok)],
            "max_length": int(self.data_cfg.max_length),
            "limits": [self.data_cfg.train_limit, self.data_cfg.eval_limit],
            "encoding": self.encoding.version,
            "layout": 4,  # 2: eval splits carry example_id; 3: raw columns on eval splits only; 4: manifest
        }
        return hashlib.sha1(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]

    @property
    def cache_path(self) -> Path:
        return Path(self.data_cfg.cache_dir).expanduser() / "tokenized" / f"{self.task_cfg.name}-{self.cache_key()}"

    def _build(self):
        with collect_skips() as skipped:
            raw = load_task(self.task_cfg)
        limits = {"train": self.data_cfg.train_limit, **{s: self.data_cfg.eval_limit for s in self.eval_splits}}
        splits = {}
        for split, limit in limits.items():
            ds = raw[split]
            if limit is not None and limit < len(ds):
                ds = ds.select(range(int(limit)))
            keep: tuple[str, ...] = ()  # raw columns kept for scoring: evaluation splits only
            if split != "train":
                ds = ds.add_column("example_id", list(range(len(ds))))
                keep = (*self.encoding.keep_columns, "example_id")
            drop = [c for c in ds.column_names if c not in keep]
            splits[split] = ds.map(self.encoding.encode, batched=True, remove_columns=drop,
                                   desc=f"tokenize {self.task_cfg.name}/{split}")
        import datasets

        return datasets.DatasetDict(splits), list(skipped)

    @staticmethod
    def _file_sizes(folder: Path) -> dict[str, int]:
        return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*"))
                if p.is_file() and p.name != MANIFEST}

    def _load_cache(self):
        """The cached splits if the cache folder is complete and loads, else None (a broken one is discarded)."""
        import datasets

        path = self.cache_path
        if not path.is_dir():
            return None
        try:
            manifest = json.loads((path / MANIFEST).read_text())
            if manifest.get("files") != self._file_sizes(path):
                raise ValueError("its files differ from its manifest (truncated or changed)")
            loaded = datasets.load_from_disk(str(path))
            rows = {split: loaded[split].num_rows for split in manifest["rows"]}
            if rows != manifest["rows"]:
                raise ValueError(f"row counts {rows} differ from the manifest's {manifest['rows']}")
        except Exception as err:  # noqa: BLE001  (any way a folder can be broken)
            log.warning("tokenization cache %s is unusable (%s: %s); rebuilding it", path, type(err).__name__, err)
            self._discard(path)
            return None
        self.skipped = manifest.get("skipped", [])
        return loaded

    @staticmethod
    def _discard(path: Path) -> None:
        # rename first: processes that have it memory-mapped keep reading; new ones rebuild
        trash = path.with_name(f".{path.name}.broken-{uuid.uuid4().hex[:8]}")
        try:
            os.replace(path, trash)
        except OSError:
            return  # another process discarded (or replaced) it already
        shutil.rmtree(trash, ignore_errors=True)

    def prepare_data(self) -> None:
        """Tokenize once and save atomically (rank 0 only under DDP); a broken cache is rebuilt."""
        if self._load_cache() is not None:
            return
        built, skipped = self._build()
        with atomic_dir(self.cache_path) as tmp:
            with quiet_progress_bars():  # "Saving the dataset" bars: noise in every log file
                built.save_to_disk(str(tmp))
            write_json_atomic(tmp / MANIFEST, {"rows": {s: built[s].num_rows for s in built},
                                                "files": self._file_sizes(tmp), "skipped": skipped})
        self.skipped = skipped

    def setup(self, stage: str | None = None) -> None:
        if self.datasets is None:
            self.datasets = self._load_cache()
            if self.datasets is None:
                self.prepare_data()
                self.datasets = self._load_cache()
            if self.datasets is None:
                raise RuntimeError(f"tokenization cache {self.cache_path} could not be built and read back")

    # -- loaders ------------------------------------------------------------------------------
    def _loader(self, split: str, batch_size: int, shuffle: bool) -> DataLoader:
        dataset = self.datasets[split]
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=EpochSeededSampler(dataset, self.seed) if shuffle else None,
            collate_fn=self.encoding.collate,
            num_workers=int(self.data_cfg.num_workers),
            persistent_workers=int(self.data_cfg.num_workers) > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", int(self.data_cfg.batch_size), shuffle=True)

    def val_dataloader(self) -> list[DataLoader]:
        return [self._loader(s, int(self.data_cfg.eval_batch_size), shuffle=False) for s in self.eval_splits]
