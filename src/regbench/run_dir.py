"""A run dir belongs to one configuration: the result-relevant config's fingerprint, and what a rerun may do.

Results must never be reported under a config that did not produce them. A run records, in
``<run dir>/fingerprint.json``, in every checkpoint and in ``metrics.json`` (``config_fingerprint``),
a hash of its *result-relevant* config. A later run into the same dir (``resume=auto``) or from a
checkpoint (``resume=<path>``) continues only when its fingerprint is the same; otherwise it is
refused before anything in the dir is touched, naming the keys that differ and how to start fresh.

What is result-relevant: every config value except those listed in :data:`NON_RESULT_KEYS`, which
change where and how a run is written or observed but not its numbers:

- ``paths.*``, ``logger.*``, ``launcher.*``, ``checkpoint.*`` (how often and whether to save),
  ``resume``, ``raise_on_failure``;
- ``data.num_workers``, ``data.cache_dir`` (same batches, other loader processes / cache place);
- ``trainer.log_every_n_steps``, ``trainer.enable_progress_bar``, ``trainer.num_sanity_val_steps``,
  ``trainer.plugins`` (cluster environments: a SLURM job finished locally is the same run),
  ``trainer.max_time`` (a time budget: a run it stops is ``incomplete`` and may resume with more);
- ``hardware.requires``;
- ``sweep.*`` (the sweep name, scale and cell id: labels for loggers, never read by training).

``task.data_dir`` is identified by what it holds, not where: the task's files are hashed
(:func:`data_identity`), so the same data under another mount point (a requeued job on another
node, a sweep re-run with another ``--data-root``) is the same run, and other data is not.
``backbone.path`` counts as written: a local folder of other weights can have the same file names
and sizes, so only the path tells them apart. Anything else (seeds, hardware, steps, regularizer
and task settings, evaluation schedule) is result-relevant, including keys added later.

Imports only the standard library and OmegaConf: the sweep layer uses it to find stale cells.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

FINGERPRINT_FILE = "fingerprint.json"
FINGERPRINT_VERSION = 1
CHECKPOINT_KEY = "regbench_fingerprint"
NON_RESULT_KEYS = (
    "paths", "logger", "launcher", "checkpoint", "resume", "raise_on_failure", "hydra",
    "data.num_workers", "data.cache_dir",
    "trainer.log_every_n_steps", "trainer.enable_progress_bar", "trainer.num_sanity_val_steps",
    "trainer.plugins", "trainer.max_time",
    "hardware.requires", "sweep",
)
DATA_DIR_KEY = "task.data_dir"
# Files of a previous run that a fresh start (resume=never) moves aside; Hydra's own files
# (.hydra/, the job log) and the sweep's record stay where they are.
KEPT_ON_REPLACE = (".hydra", ".lock", ".lock.guard", "sweep_fingerprint.json")
REPLACED_SUFFIX = ".replaced-"


class ConfigMismatchError(RuntimeError):
    """A run dir or checkpoint was made with another result-relevant config."""


def _excluded(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in NON_RESULT_KEYS)


def _flatten(container: dict, cfg: DictConfig, prefix: str, out: dict[str, Any]) -> None:
    for key, raw in container.items():
        full = f"{prefix}.{key}" if prefix else str(key)
        if _excluded(full):
            continue
        if isinstance(raw, dict) and raw:
            _flatten(raw, cfg, full, out)
            continue
        try:
            value = OmegaConf.select(cfg, full, throw_on_resolution_failure=True, throw_on_missing=True)
        except Exception:  # noqa: BLE001  (an interpolation that cannot resolve here: keep its text)
            value = raw
        if isinstance(value, (DictConfig, ListConfig)):
            value = OmegaConf.to_container(value, resolve=True)
        out[full] = value


_DATA_CACHE: dict[tuple, str] = {}


def data_identity(task_cfg: Any) -> str | None:
    """SHA-256 of the task's local files (those named in ``task.files``/``task.fewclue_files``,
    every file under a named folder), by relative name and content; None without ``task.data_dir``."""
    data_dir = task_cfg.get("data_dir") if task_cfg is not None else None
    if not data_dir:
        return None
    root = Path(str(data_dir)).expanduser()
    names = [*dict(task_cfg.get("files") or {}).values(), *dict(task_cfg.get("fewclue_files") or {}).values()]
    files: list[Path] = []
    for name in dict.fromkeys(str(n) for n in names):
        target = root / name
        if target.is_file():
            files.append(target)
        elif target.is_dir():
            files += sorted(p for p in target.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        return f"missing:{root}"
    try:
        stats = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
        if stats not in _DATA_CACHE:
            digest = hashlib.sha256()
            for path in files:
                digest.update(str(path.relative_to(root)).encode() + b"\0")
                with open(path, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        digest.update(chunk)
            _DATA_CACHE[stats] = digest.hexdigest()[:16]
    except OSError as err:  # unreadable data: the loader names the file; no fingerprint can match it
        return f"unreadable:{err}"
    return _DATA_CACHE[stats]


def _normalize(value: Any) -> Any:
    """Numbers compare by value (``1`` and ``1.0`` are the same learning rate); NaN as text."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(float(value)) else repr(float(value))
    if isinstance(value, (list, tuple)):
        return [_normalize(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _normalize(v) for k, v in value.items()}
    return str(value)


def result_config(cfg: DictConfig) -> dict[str, Any]:
    """The result-relevant config as ``{dotted key: value}`` (see the module docstring)."""
    flat: dict[str, Any] = {}
    _flatten(OmegaConf.to_container(cfg, resolve=False), cfg, "", flat)
    if DATA_DIR_KEY in flat:
        flat[DATA_DIR_KEY] = {"content": data_identity(cfg.get("task"))} if flat[DATA_DIR_KEY] else None
    return flat


def fingerprint_of(relevant: dict[str, Any]) -> str:
    payload = json.dumps({"version": FINGERPRINT_VERSION, "config": _normalize(relevant)}, sort_keys=True,
                         separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def fingerprint_record(cfg: DictConfig) -> dict[str, Any]:
    """What a run stores: ``{"version", "fingerprint", "config"}``."""
    relevant = result_config(cfg)
    return {"version": FINGERPRINT_VERSION, "fingerprint": fingerprint_of(relevant), "config": relevant}


def read_fingerprint_record(run_dir: Path) -> dict[str, Any] | None:
    """The record stored in ``run_dir``; None when there is none; an unreadable one reads as a
    config no run has (so it never matches)."""
    path = Path(run_dir) / FINGERPRINT_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
        if isinstance(record, dict) and isinstance(record.get("fingerprint"), str):
            return record
    except (OSError, ValueError):
        pass
    return {"version": None, "fingerprint": "<unreadable>", "config": {}}


def differing_keys(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``key: old -> new`` for every result-relevant key that differs (sorted)."""
    lines = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, "<absent>"), new.get(key, "<absent>")
        if _normalize(a) != _normalize(b):
            lines.append(f"{key}: {a!r} -> {b!r}")
    return lines


def mismatch_message(where: str, stored: dict[str, Any], current: dict[str, Any], fresh_hint: str) -> str | None:
    """None when ``stored`` and ``current`` fingerprints agree, else the refusal message."""
    if stored.get("fingerprint") == current["fingerprint"]:
        return None
    diff = differing_keys(stored.get("config") or {}, current["config"])
    if stored.get("version") != FINGERPRINT_VERSION:
        diff.insert(0, f"(fingerprint version {stored.get('version')!r}, this regbench writes {FINGERPRINT_VERSION})")
    shown = diff[:12] + ([f"... and {len(diff) - 12} more"] if len(diff) > 12 else [])
    return (f"{where} was made with another result-relevant config, so its results and checkpoints are not "
            f"this config's. Differing keys (stored -> now):\n  " + "\n  ".join(shown or ["<none recorded>"]) +
            f"\n{fresh_hint}")


def previous_run_files(run_dir: Path) -> list[Path]:
    """Entries a previous run left in ``run_dir`` (everything but Hydra's files, logs and locks)."""
    if not run_dir.is_dir():
        return []
    return sorted(p for p in run_dir.iterdir()
                  if p.name not in KEPT_ON_REPLACE and not p.name.endswith(".log") and not p.name.startswith(".lock"))


def has_previous_run(run_dir: Path) -> bool:
    return any((run_dir / name).exists() for name in (FINGERPRINT_FILE, "metrics.json", "checkpoints"))


def move_previous_run_aside(run_dir: Path) -> Path | None:
    """Move a previous run's files to the first free ``<run dir>.replaced-<n>``; returns it (None if nothing)."""
    entries = previous_run_files(run_dir)
    if not entries:
        return None
    n = 1
    while (target := run_dir.with_name(f"{run_dir.name}{REPLACED_SUFFIX}{n}")).exists():
        n += 1
    target.mkdir(parents=True)
    for entry in entries:
        os.replace(entry, target / entry.name)
    return target
