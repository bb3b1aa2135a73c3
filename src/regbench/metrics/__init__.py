"""Task metrics: ``compute(paths, predictions, labels)``.

``task.metrics`` lists dotted paths of functions ``fn(predictions, labels) -> float`` (GLUE/CLUE
formulas in :mod:`regbench.metrics.classification`, BLEU/ROUGE-L in :mod:`regbench.metrics.generation`),
resolved with ``hydra.utils``; each result is keyed by the function's name (``validation/accuracy``),
which is what ``task.main_metric`` and sweep reports name. All metrics are higher-is-better.
"""

from __future__ import annotations

from typing import Any, Sequence


def metric_name(path: str) -> str:
    """The result key of a metric path: its function name (``regbench.metrics.classification.f1`` -> ``f1``)."""
    return str(path).rsplit(".", 1)[-1]


def compute(paths: Sequence[str], predictions: Sequence[Any], labels: Sequence[Any]) -> dict[str, float]:
    """Compute each metric; a path that does not resolve names itself and the metrics its module has."""
    from hydra.utils import get_method

    values = {}
    for path in paths:
        try:
            fn = get_method(str(path))
        except (ImportError, ValueError, AttributeError):
            raise KeyError(f"unknown metric {path!r} in task.metrics (dotted paths of fn(predictions, labels) -> "
                           f"float); valid in {_module_of(path)}: {_functions(_module_of(path))}") from None
        values[metric_name(path)] = float(fn(predictions, labels))
    return values


def _module_of(path: str) -> str:
    return str(path).rpartition(".")[0] or "regbench.metrics.classification"


def _functions(module_name: str) -> list[str]:
    """The public functions a metrics module defines (for error messages)."""
    import importlib
    import inspect

    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return []
    return sorted(name for name, obj in vars(module).items()
                  if inspect.isfunction(obj) and obj.__module__ == module_name and not name.startswith("_"))
