"""One clean log per run, and the one place where library noise is filtered.

Hydra's job logging puts a console and a file handler (``<run dir>/train.log``) on the root
logger. Left alone, the libraries print around it:

- ``lightning`` adds its own console handler to its top logger and also propagates to the root,
  so every Lightning line was printed twice (and once more per in-process sweep job);
- ``transformers`` and ``datasets`` print through their own handlers and never reach the file;
- Python warnings go to stderr only.

:func:`setup_run_logging` (called by every run, idempotent) routes all of them through the root
logger's handlers once, so the console and ``train.log`` hold the same lines, and attaches
:class:`NoiseFilter` to those handlers. What the filter does is listed in :data:`DROPPED`,
:data:`IGNORED_WARNINGS` and :meth:`NoiseFilter.filter`; add new noise there, nowhere else.
"""

from __future__ import annotations

import contextlib
import logging
import re
import warnings
from typing import Iterator

ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

# (logger name prefix, message pattern): records that tell the user nothing.
DROPPED: tuple[tuple[str, re.Pattern], ...] = (
    # An advertisement printed by every Trainer.
    ("lightning", re.compile(r"Tip: For seamless cloud logging")),
)

# Warning message patterns ignored: deprecations inside libraries, not actionable by a user.
IGNORED_WARNINGS = (
    r".*isinstance\(treespec, LeafSpec\)` is deprecated",  # Lightning's _pytree on torch >= 2.10
    r".*`is_gradient_checkpointing` is deprecated",  # PEFT's merge/save on transformers 5
)

LOAD_REPORT = re.compile(r"(?P<model>\S+) LOAD REPORT\s*from:\s*(?P<source>.*)")


def compact_load_report(message: str) -> str | None:
    """transformers' multi-line "LOAD REPORT" table as one line (keys grouped by status), or None
    if the message is not one. Expected entries (a fine-tuning head MISSING from a pretrained
    checkpoint) stay visible, in one line instead of a dozen."""
    lines = message.splitlines()
    head = LOAD_REPORT.search(lines[0]) if lines else None
    if head is None:
        return None
    by_status: dict[str, list[str]] = {}
    for line in lines[1:]:
        cells = [c.strip() for c in line.split("|")]
        if len(cells) >= 2 and cells[0] and cells[1] and cells[0] != "Key" and not set(cells[0]) <= set("-+"):
            by_status.setdefault(cells[1], []).append(cells[0])
    if not by_status:
        return None
    parts = "; ".join(f"{status}: {', '.join(keys)}" for status, keys in by_status.items())
    return f"{head['model']} loaded from {head['source'].strip()} ({parts})"


class NoiseFilter(logging.Filter):
    """Drops :data:`DROPPED` records, compacts transformers' load report, strips ANSI escapes."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(record.name.startswith(prefix) and pattern.search(message) for prefix, pattern in DROPPED):
            return False
        plain = ANSI_ESCAPE.sub("", message)
        compact = compact_load_report(plain) if "LOAD REPORT" in plain else None
        if compact is not None or plain != message:
            record.msg, record.args = compact or plain, ()
            if compact is not None:
                record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def _add_filter(handler: logging.Handler) -> None:
    if not any(isinstance(f, NoiseFilter) for f in handler.filters):
        handler.addFilter(NoiseFilter())


def setup_run_logging() -> None:
    """Route Lightning, transformers, datasets and warnings through the root logger's handlers
    (Hydra's console + ``train.log``) exactly once, filtered by :class:`NoiseFilter`.

    Without root handlers (``run`` called from Python, not through Hydra) the libraries keep
    their own console handlers; the filter is attached to those instead.
    """
    import lightning  # noqa: F401  (its import adds the console handler handled below)

    for pattern in IGNORED_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    root = logging.getLogger()
    library_loggers = [logging.getLogger(n) for n in ("lightning", "lightning.pytorch", "lightning.fabric")]
    if root.handlers:
        for logger in library_loggers:
            for handler in list(logger.handlers):
                logger.removeHandler(handler)
            logger.propagate = True
        import datasets.utils.logging as datasets_logging
        import transformers.utils.logging as transformers_logging

        transformers_logging.disable_default_handler()
        transformers_logging.enable_propagation()
        datasets_logging.enable_propagation()
        for handler in datasets_logging.get_logger().handlers:
            datasets_logging.get_logger().removeHandler(handler)
        logging.captureWarnings(True)
        targets = list(root.handlers)
    else:
        targets = [h for logger in library_loggers for h in logger.handlers]
        import transformers.utils.logging as transformers_logging

        targets += transformers_logging.get_logger().handlers
    import transformers.utils.logging as transformers_logging

    transformers_logging.disable_progress_bar()  # "Loading weights" bars: sub-second, one per model load
    for handler in targets:
        _add_filter(handler)


@contextlib.contextmanager
def quiet_progress_bars() -> Iterator[None]:
    """No ``datasets`` progress bars inside the block (e.g. "Saving the dataset": noise in log files)."""
    import datasets.utils as datasets_utils

    was_disabled = datasets_utils.are_progress_bars_disabled()
    with warnings.catch_warnings():  # HF_DATASETS_DISABLE_PROGRESS_BARS=0 wins; no warning about it
        warnings.simplefilter("ignore")
        datasets_utils.disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                datasets_utils.enable_progress_bars()
