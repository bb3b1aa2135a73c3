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

Padding (issue 15): with random batches most of what a model computes on GLUE is padding (padded /
real tokens 1.5-3 at batch 32). ``data.group_by_length`` draws training batches from transformers'
``get_length_grouped_indices`` (random mega-batches of 50 batches, sorted by length inside: similar
lengths per batch) in a shuffled batch order (:func:`grouped_order`);
``data.sort_eval_by_length`` forms evaluation (and generation) batches from rows sorted by length;
the modules put results back in ``example_id`` order, so the scores are those of an unsorted pass.
The datamodule shards every loader across DDP ranks itself (:class:`TrainOrder`, a
``DistributedSampler`` over the sorted rows for evaluation) and the Trainer runs with
``use_distributed_sampler=False``: Lightning's replacement sampler would drop both the length
grouping and the mid-epoch resume position.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import uuid
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, Sampler

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


def token_lengths(dataset: Any, columns: tuple[str, ...] = ("input_ids",)) -> list[int]:
    """Tokens per row summed over the list-valued ``columns`` present (scalar labels are skipped),
    read from the Arrow table in one pass (no row decoding). A column of several sequences per row
    (MMLU's ``choice_ids``: one per choice, padded together) counts its longest times their number."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    table = dataset.with_format("arrow")[:]
    total = None
    for name in columns:
        if name not in table.column_names or not str(dataset.features[name]).startswith(("List", "Sequence")):
            continue
        column = table.column(name).combine_chunks()
        counts = pc.list_value_length(column).to_numpy(zero_copy_only=False)
        if pa.types.is_list(column.type.value_type) or pa.types.is_large_list(column.type.value_type):
            inner = pc.list_value_length(pc.list_flatten(column)).to_numpy(zero_copy_only=False)
            longest = np.zeros(len(counts), dtype=np.int64)
            np.maximum.at(longest, pc.list_parent_indices(column).to_numpy(zero_copy_only=False), inner)
            counts = longest * counts
        total = counts if total is None else total + counts
    if total is None:
        raise ValueError(f"no token column among {list(columns)} in {table.column_names}")
    return [int(n) for n in total]


# Rows per length-sorted mega-batch, in batches: transformers' own cap. The library also keeps at least
# four mega-batches per epoch, which on small training sets leaves mega-batches of a few batches and
# padding of 1.15-1.7 (WNLI's 635 rows, a 250-row mini); regbench applies the cap at every size.
MEGA_BATCH_BATCHES = 50


def grouped_order(lengths: list[int], batch_size: int, generator: torch.Generator) -> list[int]:
    """One epoch of length-grouped batches: transformers' ``get_length_grouped_indices`` (a random
    permutation cut into mega-batches of :data:`MEGA_BATCH_BATCHES` batches, each sorted by length,
    the batch holding the longest row first) with the order of the other full batches shuffled: a
    sorted mega-batch runs from long to short rows, and on a set of one mega-batch that would be the
    same length curriculum every epoch. Only the last batch can be short; it stays last. Batch
    composition varies between epochs through the random mega-batches and the random order of rows
    of equal length (fairseq keeps whole batches fixed and shuffles their order)."""
    from transformers.trainer_pt_utils import get_length_grouped_indices

    order = get_length_grouped_indices(lengths, batch_size, mega_batch_mult=MEGA_BATCH_BATCHES, generator=generator)
    batches = [order[k:k + batch_size] for k in range(0, len(order), batch_size)]
    middle, tail = batches[1:], []
    if middle and len(middle[-1]) < batch_size:
        middle, tail = middle[:-1], middle[-1:]
    shuffled = [middle[k] for k in torch.randperm(len(middle), generator=generator).tolist()]
    return [i for batch in batches[:1] + shuffled + tail for i in batch]


class TrainOrder(Sampler[int]):
    """The training order of one epoch, a function of ``(seed, epoch, rank)`` alone, resumable mid-epoch.

    The epoch's generator is seeded from ``(seed, epoch)``, the same on every rank; no global RNG is
    consumed.

    - ``group_by_length``: :func:`grouped_order` over global batches of ``batch_size x world`` rows;
      rank ``r`` takes every ``world``-th row (the rows of one global batch have similar lengths, so
      every rank's batch does too; the shares are disjoint, padded to equal length by repeating the
      first rows as ``DistributedSampler`` does);
    - otherwise a random permutation: ``torch.randperm`` (one process, the order regbench always
      used) or ``torch``'s ``DistributedSampler(shuffle=True, seed=seed)`` (DDP, the sampler
      Lightning injected before).

    Lightning calls :meth:`set_epoch` every epoch. Mid-epoch resume:
    :meth:`state_dict` (saved in every checkpoint through the datamodule's ``state_dict``) holds the
    epoch and the number of batches the run had trained on in it (``progress()``: Lightning's own
    count, the one it continues ``batch_idx`` from); on resume the epoch's order is drawn again and
    those batches are skipped, so no row is repeated or left out.
    """

    def __init__(self, lengths: list[int], batch_size: int, seed: int, group_by_length: bool,
                 num_replicas: int = 1, rank: int = 0, progress: Any = None):
        from torch.utils.data.distributed import DistributedSampler

        self.lengths, self.batch_size, self.seed = lengths, int(batch_size), int(seed)
        self.group_by_length, self.num_replicas, self.rank = bool(group_by_length), int(num_replicas), int(rank)
        self.progress = progress or (lambda: 0)
        self.epoch = 0
        self._resume: tuple[int, int] | None = None  # (epoch, batches already trained in it)
        self.inner = None
        if self.num_replicas > 1 and not self.group_by_length:
            self.inner = DistributedSampler(range(len(lengths)), num_replicas=self.num_replicas, rank=self.rank,
                                            shuffle=True, seed=self.seed)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def indices(self, epoch: int) -> list[int]:
        """This rank's rows of ``epoch`` in training order."""
        if self.inner is not None:
            self.inner.set_epoch(epoch)
            return list(self.inner)
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        if not self.group_by_length:
            return torch.randperm(len(self.lengths), generator=generator).tolist()
        order = grouped_order(self.lengths, self.batch_size * self.num_replicas, generator)
        order += order[:len(self) * self.num_replicas - len(order)]
        return order[self.rank::self.num_replicas]

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.num_replicas)

    def __iter__(self):
        order = self.indices(self.epoch)
        skip = 0
        if self._resume is not None and self._resume[0] == self.epoch:
            skip = self._resume[1] * self.batch_size
        self._resume = None
        yield from order[skip:]

    # -- resume ---------------------------------------------------------------------------------
    def _identity(self) -> dict[str, Any]:
        return {"seed": self.seed, "rows": len(self.lengths), "batch_size": self.batch_size,
                "group_by_length": self.group_by_length, "world_size": self.num_replicas}

    def state_dict(self) -> dict[str, Any]:
        return {**self._identity(), "epoch": self.epoch, "batches_done": int(self.progress())}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = {k: state.get(k) for k in self._identity()}
        if saved != self._identity():
            differ = {k: (saved[k], v) for k, v in self._identity().items() if saved[k] != v}
            raise RuntimeError(f"the checkpoint's training order does not match this run's (saved, now): {differ}; "
                               f"the epoch it stopped in cannot be continued row for row. Resume with the same data, "
                               f"data.batch_size, data.group_by_length and number of processes, or start fresh "
                               f"(resume=never)")
        epoch, done = int(state["epoch"]), int(state["batches_done"])
        if done >= math.ceil(len(self) / self.batch_size):  # saved at the end of an epoch: the next one starts
            epoch, done = epoch + 1, 0
        # The epoch is set here too: a loader with workers draws indices as soon as Lightning creates
        # its iterator, before Lightning's set_epoch of the resumed epoch.
        self.epoch, self._resume = epoch, (epoch, done)


# Evaluation batches close before a row that the batch's longest row would pad by more than this
# factor: no evaluated row carries more than 10% padding (a batch's padded/real <= 1.10). Fewer rows
# per batch cost little next to padding (nothing on CPU); training keeps fixed-size batches.
EVAL_MAX_PADDING = 1.10


class LengthBatches(Sampler[list[int]]):
    """Evaluation batches over rows sorted longest first: at most ``batch_size`` rows each, and a
    batch closes before a row shorter than its longest row / :data:`EVAL_MAX_PADDING`."""

    def __init__(self, rows: list[int], lengths: list[int], batch_size: int):
        self.batches: list[list[int]] = []
        for row in sorted(rows, key=lambda i: -lengths[i]):
            batch = self.batches[-1] if self.batches else None
            if batch is None or len(batch) >= batch_size or lengths[batch[0]] > EVAL_MAX_PADDING * lengths[row]:
                self.batches.append([row])
            else:
                batch.append(row)

    def __iter__(self):
        yield from (list(batch) for batch in self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class TaskDataModule(L.LightningDataModule):
    """Train loader (:class:`TrainOrder`, seeded with the run's seed) and one eval loader per ``task.eval_splits``;
    ``encoding`` is the task kind's factory ``fn(tokenizer, task_cfg, max_length) -> Encoding``."""

    def __init__(self, task_cfg: Any, data_cfg: Any, tokenizer: Any, seed: int = 0, *, encoding: Any):
        super().__init__()
        self.task_cfg, self.data_cfg, self.tokenizer, self.seed = task_cfg, data_cfg, tokenizer, seed
        self.encoding = encoding(tokenizer, task_cfg, int(data_cfg.max_length))
        self.eval_splits = list(task_cfg.eval_splits)
        self.datasets = None
        self._lengths: dict[str, list[int]] = {}
        self._train_order: TrainOrder | None = None
        self._train_resume: dict[str, Any] | None = None  # a checkpoint's train order, until the loader exists
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
        limits = {"train": self.data_cfg.train_limit, **{s: self.data_cfg.eval_limit for s in self.eval_splits}}
        key = self.cache_key()
        with collect_skips() as skipped:
            raw = load_task(self.task_cfg, limits)
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
            # An explicit fingerprint: the cache key already names everything the output depends on, and
            # datasets would otherwise pickle the tokenizer to hash the function (~0.2 s per split).
            splits[split] = ds.map(self.encoding.encode, batched=True, remove_columns=drop,
                                   new_fingerprint=f"regbench-{key}-{split}", desc=f"tokenize {self.task_cfg.name}/{split}")
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
        """Tokenize once and save atomically (rank 0 only under DDP); a broken cache is rebuilt.
        The checked cache is kept for :meth:`setup` (start-up: read once, not three times)."""
        if self.datasets is not None:
            return
        loaded = self._load_cache()
        if loaded is not None:
            self.datasets = loaded
            return
        built, skipped = self._build()
        with atomic_dir(self.cache_path) as tmp:
            with quiet_progress_bars():  # "Saving the dataset" bars: noise in every log file
                built.save_to_disk(str(tmp))
            write_json_atomic(tmp / MANIFEST, {"rows": {s: built[s].num_rows for s in built},
                                                "files": self._file_sizes(tmp), "skipped": skipped})
        self.skipped = skipped
        self.datasets = self._load_cache()  # the saved files (memory-mapped), as every later run reads them

    def setup(self, stage: str | None = None) -> None:
        if self.datasets is None:
            self.datasets = self._load_cache()
            if self.datasets is None:
                self.prepare_data()
                self.datasets = self._load_cache()
            if self.datasets is None:
                raise RuntimeError(f"tokenization cache {self.cache_path} could not be built and read back")

    # -- loaders ------------------------------------------------------------------------------
    def lengths(self, split: str) -> list[int]:
        """Tokens per row of a split, computed once: training counts sources and token targets (what
        padding costs in a step), evaluation the inputs (generation lengths are not known ahead)."""
        if split not in self._lengths:
            columns = ("input_ids", "labels") if split == "train" else ("input_ids", "choice_ids")
            self._lengths[split] = token_lengths(self.datasets[split], columns)
        return self._lengths[split]

    def _world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 1, 0
        return int(trainer.world_size), int(trainer.global_rank)

    def _batches_done(self) -> int:
        """Batches trained on in the current epoch (Lightning's count; 0 outside ``fit``)."""
        trainer = getattr(self, "trainer", None)
        try:
            return int(trainer.fit_loop.epoch_loop.batch_progress.current.processed)
        except AttributeError:
            return 0

    def _dataloader(self, dataset: Any, batch_size: int, sampler: Any) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            # Its own generator: creating an iterator draws a base seed, which would otherwise come from the
            # global RNG and shift dropout masks after a mid-epoch resume (an iterator the straight run made
            # before the checkpoint).
            generator=torch.Generator().manual_seed(self.seed),
            collate_fn=self.encoding.collate,
            num_workers=int(self.data_cfg.num_workers),
            persistent_workers=int(self.data_cfg.num_workers) > 0,
        )

    def train_dataloader(self) -> DataLoader:
        world, rank = self._world()
        order = TrainOrder(self.lengths("train"), int(self.data_cfg.batch_size), self.seed,
                           bool(self.data_cfg.group_by_length), num_replicas=world, rank=rank,
                           progress=self._batches_done)
        if self._train_resume is not None:
            order.load_state_dict(self._train_resume)
            self._train_resume = None
        self._train_order = order
        return self._dataloader(self.datasets["train"], int(self.data_cfg.batch_size), order)

    # -- checkpointed state (Lightning saves it under the datamodule's class name) ----------------
    # Not the loader's own state_dict: Lightning builds the train loader (for estimated_stepping_batches)
    # before it restores loop states, and then never hands the loader its saved state.
    def state_dict(self) -> dict[str, Any]:
        return {"train_order": self._train_order.state_dict()} if self._train_order is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        saved = state_dict.get("train_order")
        if saved is None:
            return
        # Lightning warns that a plain loader restarts its epoch; this one continues where it stopped.
        warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch")
        if self._train_order is not None:
            self._train_order.load_state_dict(saved)
        else:
            self._train_resume = saved

    def eval_order(self, split: str) -> list[int] | None:
        """Rows of an evaluation split longest first (ties in row order), or None when not sorting."""
        if not self.data_cfg.sort_eval_by_length:
            return None
        lengths = self.lengths(split)
        return sorted(range(len(lengths)), key=lambda i: -lengths[i])

    def eval_dataloader(self, split: str) -> DataLoader:
        """Batches of one evaluation split. Under DDP each rank takes every ``world``-th row (of the
        length-sorted split when sorting), shards evened out with repeated rows that the modules drop
        by ``example_id``. Sorted: :class:`LengthBatches` (similar lengths, at most 10% padding)."""
        from torch.utils.data.distributed import DistributedSampler

        dataset = self.datasets[split]
        world, rank = self._world()
        order = self.eval_order(split)
        if order is None:
            sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=False) if world > 1 else None
            return self._dataloader(dataset, int(self.data_cfg.eval_batch_size), sampler)
        if world > 1:
            order = [order[i] for i in DistributedSampler(order, num_replicas=world, rank=rank, shuffle=False)]
        return DataLoader(dataset, batch_sampler=LengthBatches(order, self.lengths(split), int(self.data_cfg.eval_batch_size)),
                          collate_fn=self.encoding.collate, num_workers=int(self.data_cfg.num_workers),
                          persistent_workers=int(self.data_cfg.num_workers) > 0,
                          generator=torch.Generator().manual_seed(self.seed))

    def val_dataloader(self) -> list[DataLoader]:
        return [self.eval_dataloader(s) for s in self.eval_splits]
