"""Regularizers: one module per method, all behind :mod:`regbench.regularizers.base`.

Importing this package registers every built-in method in ``REGISTRY``.
"""

from regbench.regularizers import none  # noqa: F401
from regbench.regularizers import mixout  # noqa: F401
from regbench.regularizers import lora  # noqa: F401
from regbench.regularizers import lora_dropout  # noqa: F401
from regbench.regularizers.base import REGISTRY, Regularizer, RegularizerConfigError, build_regularizer, register

__all__ = ["REGISTRY", "Regularizer", "RegularizerConfigError", "build_regularizer", "register"]
