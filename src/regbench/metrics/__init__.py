"""Task metrics by name: ``compute(names, predictions, labels)``.

GLUE/CLUE metrics follow the official formulas (via sklearn/scipy); generation metrics register
themselves from :mod:`regbench.metrics.generation`. All registered metrics are higher-is-better.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

METRICS: dict[str, Callable[[Sequence[Any], Sequence[Any]], float]] = {}


def register_metric(name: str):
    """Decorator: make ``fn(predictions, labels) -> float`` available as ``task.metrics: [name]``."""

    def wrap(fn):
        METRICS[name] = fn
        return fn

    return wrap


def compute(names: Sequence[str], predictions: Sequence[Any], labels: Sequence[Any]) -> dict[str, float]:
    """Compute each named metric; unknown names list the valid ones."""
    from regbench.metrics import classification, generation  # noqa: F401  (registers)

    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise KeyError(f"unknown metric(s) {unknown}; valid: {sorted(METRICS)}")
    return {name: float(METRICS[name](predictions, labels)) for name in names}
