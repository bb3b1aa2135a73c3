"""Regularizers: one module per method (``regbench.regularizers.<name>``) and one
``conf/regularizer/<name>.yaml`` whose ``_target_`` names its class; the interface and the composition
contract are in :mod:`regbench.regularizers.base`, the stack the loop talks to in
:mod:`regbench.regularizers.composition`. The available methods are the option files of
``conf/regularizer/`` (Hydra lists them on an unknown name); nothing is registered by import.
"""

from regbench.regularizers.base import Regularizer, RegularizerConfigError
from regbench.regularizers.composition import RegularizerStack, build_regularizer

__all__ = ["Regularizer", "RegularizerConfigError", "RegularizerStack", "build_regularizer"]
