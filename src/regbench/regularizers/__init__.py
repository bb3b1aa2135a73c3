"""Regularizers: one module per method, all behind :mod:`regbench.regularizers.base`.

Importing this package registers every built-in method in ``REGISTRY``.
"""

from regbench.regularizers import (attention_dropout, dropout, drophead, lora, lora_dropout,  # noqa: F401
                                   mixout, none, tlm, very_large_dropout)
from regbench.regularizers.base import REGISTRY, Regularizer, RegularizerConfigError, build_regularizer, register

__all__ = ["REGISTRY", "Regularizer", "RegularizerConfigError", "build_regularizer", "register"]
