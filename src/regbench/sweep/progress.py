"""Where a sweep stands: per-cell states (``status``) and a progress line while ``run`` waits.

Both read only the run dirs (``metrics.json``, ``sweep_fingerprint.json``), so they work for any
launcher, for a sweep driven by another process (``run --detach``), and write nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from regbench.sweep.launch import METRICS_FILE, is_stale, read_state
from regbench.sweep.spec import Cell

STATES = ("ok", "failed", "running", "missing", "stale")


@dataclass(frozen=True)
class CellStatus:
    """One cell as its run dir says: a state of :data:`STATES`, the main metric's best value (ok
    cells), the error (failed cells) and how long ago ``metrics.json`` was written."""

    cell_id: str
    state: str
    value: float | None = None
    main_metric: str | None = None
    error: str | None = None
    age_s: float | None = None


def cell_status(cell: Cell, sweep_dir: Path, now: float | None = None) -> CellStatus:
    run_dir = sweep_dir / cell.id
    if is_stale(cell, run_dir):
        return CellStatus(cell.id, "stale")
    state = read_state(run_dir)
    metrics = state.metrics or {}
    main = metrics.get("main_metric")
    value = (metrics.get("best") or {}).get(main) if main else None
    path = run_dir / METRICS_FILE
    age = (now or time.time()) - path.stat().st_mtime if path.is_file() else None
    return CellStatus(cell.id, state.status, value, main, state.error, age)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def format_status(statuses: list[CellStatus], title: str) -> str:
    """The ``status`` text: counts per state, then one line per cell."""
    counts = {s: sum(1 for c in statuses if c.state == s) for s in STATES}
    lines = [f"{title}: {len(statuses)} cells: " + ", ".join(f"{counts[s]} {s}" for s in STATES)]
    for status in statuses:
        detail = ""
        if status.state == "ok" and status.value is not None:
            detail = f"{status.main_metric}={status.value:.4f}"
        elif status.state == "failed":
            detail = status.error or ""
        elif status.state == "running" and status.age_s is not None:
            detail = f"metrics.json written {_duration(status.age_s)} ago (a crashed job also reads as running)"
        elif status.state == "stale":
            detail = "made with other settings: `run` moves it aside and runs the cell again"
        lines.append(f"  {status.state:<8} {status.cell_id}  {detail}".rstrip())
    return "\n".join(lines)


@dataclass
class Progress:
    """Progress of one launch: cells finished since ``started_at`` (ok or failed), running ones,
    and the ETA: remaining cells x the measured time per finished cell (wall clock since the
    launch divided by the cells finished, so the launcher's parallelism is included)."""

    cells: list[Cell]
    sweep_dir: Path
    started_at: float
    echo: Callable[[str], None] = print
    label: str = "sweep"
    _last: tuple | None = field(default=None, init=False)

    def counts(self) -> dict[str, int]:
        counts = {"ok": 0, "failed": 0, "running": 0, "waiting": 0}
        for cell in self.cells:
            path = self.sweep_dir / cell.id / METRICS_FILE
            state = read_state(self.sweep_dir / cell.id).status
            fresh = path.is_file() and path.stat().st_mtime >= self.started_at - 1
            if state in ("ok", "failed") and fresh:
                counts[state] += 1
            elif state == "running" and fresh:
                counts["running"] += 1
            else:
                counts["waiting"] += 1
        return counts

    def line(self, counts: dict[str, int], now: float) -> str:
        done, total = counts["ok"] + counts["failed"], len(self.cells)
        elapsed = now - self.started_at
        text = f"[{self.label}] {done}/{total} done ({counts['failed']} failed), {counts['running']} running, " \
               f"{_duration(elapsed)} elapsed"
        if 0 < done < total:
            per_cell = elapsed / done
            text += f", ETA {_duration(per_cell * (total - done))} ({_duration(per_cell)} per cell)"
        return text

    def poll(self, now: float | None = None) -> None:
        """Print a progress line when a cell finished or started since the last poll."""
        counts = self.counts()
        key = (counts["ok"], counts["failed"], counts["running"])
        if key != self._last:
            self._last = key
            self.echo(self.line(counts, now or time.time()))
