"""``regularizer=none``: the backbone's own configuration, unchanged (the baseline)."""

from regbench.regularizers.base import Regularizer


class NoRegularizer(Regularizer):
    """Plain fine-tuning: the backbone keeps its configured dropout; nothing is patched."""
