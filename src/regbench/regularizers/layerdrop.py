"""``regularizer=layerdrop``: LayerDrop (Fan, Grave & Joulin, ICLR 2020, arXiv 1909.11556, Sec. 3).

In training, every transformer block of every stack (encoder and decoder; where they are comes from
:func:`regbench.models.structure.blocks`) is skipped, i.e. replaced by the identity, with probability
``p``: one Bernoulli draw per block per forward pass, shared by the whole batch, no rescaling of the
kept blocks (the paper's Sec. 3: "structured dropout" of whole layers; at inference every layer runs,
the paper's "full network" setting, so eval is the unregularized model). A skipped block's forward is
not run at all, so a step costs less (the paper's speed-up), and its parameters get no gradient.

One mechanism for every family: the blocks' forwards are patched (a skipped block returns its input
hidden states, plus what :attr:`regbench.models.structure.Layout.block_returns` says it hands on, e.g.
T5's shared position biases). Hugging Face BART's own ``encoder_layerdrop`` / ``decoder_layerdrop``
implement the same rule inside BART's loop; they are set to 0 here so that only one draw acts (and
every family follows one code path and one random stream). A block that computes state the later
blocks reuse is never skipped (T5's first block of each stack computes the relative position bias
all its layers add; ``Block.skippable``); ``describe()`` records how many blocks can be skipped.

Draws come from a generator seeded from ``torch.initial_seed()`` when the method is applied, so every
DDP rank (seeded alike by ``seed``) skips the same blocks in the same step. Under DDP a skipped
block's parameters take no part in the backward pass: the method declares
``leaves_parameters_unused``, and the run turns on DDP's ``find_unused_parameters``
(:func:`regbench.hardware.allow_unused_parameters`) or refuses strategies that cannot allow it.

Parameter: ``p`` in [0, 1) (the paper trains with 0.1-0.2 and 0.5 for its pruning experiments).
The draw is made per forward pass inside the training step (``wrap_forward``), so with R-Drop each of
its two passes gets its own draw, like its dropout masks (fairseq's ``LayerDropModuleList`` also
draws per forward call).
"""

from __future__ import annotations

import inspect
import logging
from typing import Any, Callable

import torch
from torch import nn

from regbench.models.structure import Block, blocks
from regbench.regularizers.backbone_config import iter_configs
from regbench.regularizers.base import Regularizer, RegularizerConfigError, check_range

log = logging.getLogger(__name__)

NATIVE_LAYERDROP_KEYS = ("encoder_layerdrop", "decoder_layerdrop", "layerdrop")


class LayerDrop(Regularizer):
    """Skip whole transformer blocks with probability ``p`` per training pass (arXiv 1909.11556)."""

    leaves_parameters_unused = True

    def __init__(self, p: float = 0.2) -> None:
        self.p = check_range("p", p, 0.0, 1.0, high_open=True)
        self._blocks: list[Block] = []
        self._skip: list[bool] = []
        self._active = False
        self._generator: torch.Generator | None = None
        self.last_skipped: list[str] = []  # block paths skipped in the latest training pass
        self.passes = 0
        self.skipped = 0

    def configure_backbone_config(self, config: Any) -> None:
        """Hugging Face's own LayerDrop off (BART): the patch below is the one mechanism."""
        for cfg in iter_configs(config):
            for key in NATIVE_LAYERDROP_KEYS:
                if isinstance(getattr(cfg, key, None), (int, float)):
                    setattr(cfg, key, 0.0)

    def apply(self, model: nn.Module) -> nn.Module:
        """Patch the forward of every skippable block of every stack."""
        found = blocks(model)
        self._blocks = [b for b in found if b.skippable]
        if not self._blocks:
            raise RegularizerConfigError(f"regularizer.layerdrop: {type(model).__name__} has no block that can be skipped")
        for module in model.modules():  # a native LayerDrop the config did not reach (modules keep a copy)
            if isinstance(getattr(module, "layerdrop", None), float):
                module.layerdrop = 0.0
        for index, block in enumerate(self._blocks):
            block.module.forward = self._patched(index, block)
        self._skip = [False] * len(self._blocks)
        self._generator = torch.Generator().manual_seed(torch.initial_seed() % 2**63)
        kept = [b.path for b in found if not b.skippable]
        log.info("layerdrop p=%s over %d blocks%s", self.p, len(self._blocks),
                 f" (always kept: {', '.join(kept)})" if kept else "")
        return model

    def _patched(self, index: int, block: Block) -> Callable[..., Any]:
        original = block.module.forward
        signature = inspect.signature(original)

        def forward(*args: Any, **kwargs: Any) -> Any:
            if not (self._active and self._skip[index] and block.module.training):
                return original(*args, **kwargs)
            bound = signature.bind_partial(*args, **kwargs).arguments
            hidden = bound.get("hidden_states", args[0] if args else None)
            if not block.returns:
                return hidden
            return (hidden, *(bound.get(name) for name in block.returns))

        return forward

    def draw(self) -> list[bool]:
        """One Bernoulli(p) per block: True = skip it in this pass."""
        assert self._generator is not None, "layerdrop: apply() was not called"
        return (torch.rand(len(self._blocks), generator=self._generator) < self.p).tolist()

    def wrap_forward(self, forward: Callable[[dict], Any]) -> Callable[[dict], Any]:
        """A fresh draw for this pass; blocks skip only inside it (eval and generation never do)."""

        def pass_with_layerdrop(batch: dict) -> Any:
            self._skip = self.draw()
            self.last_skipped = [b.path for b, skip in zip(self._blocks, self._skip) if skip]
            self.passes += 1
            self.skipped += len(self.last_skipped)
            self._active = True
            try:
                return forward(batch)
            finally:
                self._active = False

        return pass_with_layerdrop

    def describe(self) -> dict[str, Any]:  # noqa: D102
        return {"name": self.name, "p": self.p}
