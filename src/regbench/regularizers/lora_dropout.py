"""``regularizer=lora_dropout``: LoRA Dropout (Lin et al. 2024, arXiv 2404.09610, Sec. 3).

LoRA (through PEFT, see :mod:`regbench.regularizers.lora`) whose adapter factors are masked
instead of the adapter input: with ``Delta W = B A`` (A: r x in, B: out x r), draw
``m_A ~ Bernoulli(1-p)`` over A's input columns and ``m_B ~ Bernoulli(1-p)`` over B's output
rows, giving ``Delta W' = diag(m_B) B A diag(m_A)`` (the rank r is never dropped). Masks are
resampled at every forward pass in training and shared by the mini-batch. PEFT's own
``lora_dropout`` is forced to 0.

Scaling (checked against the paper): the masked factors are ``A diag(m_A)`` and ``diag(m_B) B``
with ``m ~ Bern(1-p)`` and no ``1/(1-p)`` rescaling; the paper's analysis treats the masks as
sparsity of the fine-tuned update (an entry of Delta W is zeroed with probability ``2p - p^2``,
the quantity its generalization bound depends on), which only holds without rescaling. We found no
released reference code. Consequence, kept as in the paper: the expected training update is
``(1-p)^2 Delta W`` while a plain evaluation pass (``ensemble_passes=1``) uses the full ``Delta W``;
the test-time ensemble evaluates masked sub-networks, as in training.

Training objective (Sec. 3): ``L = 1/N sum_r loss(x; theta_0 + Delta W(m_r))`` over ``train_passes``
= N independently masked forward passes of the same batch (N=1: one instance, the default). With
other regularizers, every pass is their full regularized pass (fresh TLM/DropHead masks too).

Test-time ensemble (Sec. 3.3), ``ensemble_passes`` = N > 1:

- classification / regression (:meth:`LoRADropout.predict_logits`): the mean of N forward passes with
  independent masks; ``ensemble_average=probs`` returns ``log(mean softmax)`` (argmax = the averaged
  prediction, and cross-entropy on it is the ensemble's NLL), ``logits`` the mean logits; regression
  heads (one output) always average outputs.
- generation (:meth:`LoRADropout.generate`): N sub-networks, each with its masks fixed for the whole
  output, and at every decoding step the next-token distribution is ``log(mean_r softmax_r)`` of
  the N members (``logits``: their mean logits), computed before the decoding processors (beam scores, no-repeat n-grams, forced
  tokens act on the ensemble's distribution). Decoding runs without a KV cache (every member
  re-reads the prefix), so it costs about N times a cache-less generation. Decoder-only models
  (GPT-2, Llama, Qwen2): the members re-read prompt + generated prefix with the same mask/positions.

Implementation on top of PEFT's ``lora.Linear``: ``x -> lora_B(lora_A(drop(x)))``, so
``diag(m_A)`` is applied in PEFT's dropout slot (``x * m_A``, a module without state, so
adapters save/load unchanged) and ``diag(m_B)`` by a forward hook on ``lora_B`` (output
``* m_B``). No weight is copied.

Parameters (``conf/regularizer/lora_dropout.yaml``): ``r``, ``alpha``, ``target_modules``,
``modules_to_save`` as for ``lora``; ``p`` in [0, 1); ``train_passes`` >= 1; ``ensemble_passes`` >= 1;
``ensemble_average`` in {probs, logits}.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn

from regbench.models.structure import task_model
from regbench.regularizers.base import RegularizerConfigError, check_choice, check_integer
from regbench.regularizers.lora import LoRA


class _MaskSwitch:
    """Shared mask state. Masks are drawn fresh per forward in training mode or while ``forced``
    (classification ensemble); while ``member`` is set (generation ensemble), each mask module keeps
    one mask per member, fixed until :meth:`reset`."""

    def __init__(self, p: float) -> None:
        self.p = p
        self.forced = False
        self.member: int | None = None
        self.fixed: dict[tuple[int, int], torch.Tensor] = {}

    def active(self, training: bool) -> bool:
        return self.p > 0.0 and (training or self.forced or self.member is not None)

    def mask(self, owner: object, size: int, like: torch.Tensor) -> torch.Tensor:
        if self.member is None:
            return _draw_mask(size, like, self.p)
        key = (id(owner), self.member)
        if key not in self.fixed:
            self.fixed[key] = _draw_mask(size, like, self.p)
        return self.fixed[key]

    def reset(self) -> None:
        self.member, self.fixed = None, {}


def _draw_mask(size: int, like: torch.Tensor, p: float) -> torch.Tensor:
    return torch.empty(size, dtype=like.dtype, device=like.device).bernoulli_(1.0 - p)


class InputColumnMask(nn.Module):
    """``x * m_A``: ``diag(m_A)`` on A's input columns, placed in PEFT's ``lora_dropout`` slot."""

    def __init__(self, switch: _MaskSwitch) -> None:
        super().__init__()
        self.switch = switch
        self.last_mask: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if not self.switch.active(self.training):
            self.last_mask = None
            return x
        self.last_mask = self.switch.mask(self, x.shape[-1], x)
        return x * self.last_mask


class OutputRowMask:
    """Forward hook on ``lora_B``: output ``* m_B`` = ``diag(m_B)`` on B's output rows."""

    def __init__(self, switch: _MaskSwitch) -> None:
        self.switch = switch
        self.last_mask: torch.Tensor | None = None

    def __call__(self, module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor | None:
        if not self.switch.active(module.training):
            self.last_mask = None
            return None
        self.last_mask = self.switch.mask(self, output.shape[-1], output)
        return output * self.last_mask


def factor_masks(model: nn.Module) -> list[tuple[nn.Module, InputColumnMask, OutputRowMask]]:
    """``(lora layer, m_A module, m_B hook)`` for every masked adapter of ``model``."""
    return list(getattr(model, "_lora_factor_masks", []))


class LoRADropout(LoRA):
    """LoRA with Bernoulli masks on A's input columns and B's output rows + test-time ensemble."""

    renamed_parameters: dict[str, str] = {}

    def __init__(self, r: int = 8, alpha: float = 16.0, p: float = 0.1,
                 target_modules: Sequence[str] | None = None,
                 modules_to_save: Sequence[str] | None = None, train_passes: int = 1,
                 ensemble_passes: int = 1, ensemble_average: str = "probs") -> None:
        super().__init__(r=r, alpha=alpha, p=p, target_modules=target_modules, modules_to_save=modules_to_save)
        self.train_passes = check_integer("train_passes", train_passes, 1)
        self.ensemble_passes = check_integer("ensemble_passes", ensemble_passes, 1)
        self.ensemble_average = check_choice("ensemble_average", ensemble_average, ("probs", "logits"))
        self._switch = _MaskSwitch(self.p)

    @property
    def peft_dropout(self) -> float:
        """PEFT's input dropout is off: ``p`` masks the factors instead."""
        return 0.0

    def needs(self) -> frozenset[str]:
        off = set()
        if self.train_passes == 1:
            off.add("training_loss")
        if self.ensemble_passes == 1 or self.p == 0.0:
            off |= {"predict_logits", "generate"}
        return super().needs() - off

    def apply(self, model: nn.Module) -> nn.Module:
        """PEFT LoRA (dropout 0), then install ``m_A`` / ``m_B`` on every adapter."""
        from peft.tuners.lora import LoraLayer

        peft_model = super().apply(model)
        masks = []
        for module in peft_model.modules():
            if not isinstance(module, LoraLayer):
                continue
            for adapter in module.lora_A:
                if not isinstance(module.lora_dropout[adapter], nn.Identity):
                    raise RegularizerConfigError("lora_dropout: PEFT lora_dropout must be 0")
                mask_a = InputColumnMask(self._switch)
                module.lora_dropout[adapter] = mask_a
                mask_b = OutputRowMask(self._switch)
                module.lora_B[adapter].register_forward_hook(mask_b)
                masks.append((module, mask_a, mask_b))
        if not masks:
            raise RegularizerConfigError("lora_dropout: no LoRA layer found to mask")
        # A plain attribute (not a submodule), so the state dict is unchanged.
        object.__setattr__(peft_model, "_lora_factor_masks", masks)
        return peft_model

    def training_loss(self, forward: Callable[[dict], Any], batch: dict[str, Any]) -> Any:
        """``1/N sum_r loss(x; theta_0 + Delta W(m_r))`` over ``train_passes`` masked passes (Sec. 3)."""
        losses = [forward(batch).loss for _ in range(self.train_passes)]
        return torch.stack(losses).mean()

    def predict_logits(self, model: nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        """Test-time ensemble over ``ensemble_passes`` independently masked forward passes."""
        if "predict_logits" not in self.needs():
            return model(**batch).logits
        self._switch.forced = True
        try:
            outputs = [model(**batch).logits for _ in range(self.ensemble_passes)]
        finally:
            self._switch.forced = False
        return average_passes(outputs, self.ensemble_average)

    def generate(self, model: nn.Module, **inputs: Any) -> Any:
        """Generation with the ensemble: every decoding step uses ``log(mean_r softmax_r)`` of the
        ``ensemble_passes`` members' next-token distributions (``ensemble_average=logits``: their mean
        logits), member masks fixed per output."""
        if "generate" not in self.needs():
            return model.generate(**inputs)
        with self._members(model, inputs["input_ids"], inputs.get("attention_mask")):
            return model.generate(**inputs, use_cache=False)

    @contextlib.contextmanager
    def _members(self, model: nn.Module, source_ids: torch.Tensor, source_mask: torch.Tensor | None) -> Iterator[None]:
        """Member 0 is the pass ``generate`` makes itself; a forward hook on the underlying model adds
        members 1..N-1 on the same decoder prefix and replaces the last position's logits."""
        hf_model = task_model(model)
        encoded: dict[int, Any] = {}

        def add_members(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
            if self._switch.member != 0:  # the members' own passes below
                return output
            last = [output.logits[:, -1].float()]
            if "decoder_input_ids" not in kwargs:  # decoder-only: each member re-reads the whole prefix
                inputs = {k: kwargs[k] for k in ("input_ids", "attention_mask", "position_ids")
                          if kwargs.get(k) is not None}
                try:
                    for member in range(1, self.ensemble_passes):
                        self._switch.member = member
                        last.append(hf_model(**inputs, use_cache=False).logits[:, -1].float())
                finally:
                    self._switch.member = 0
                return _replace_last(output, average_passes(last, self.ensemble_average))
            prefix = kwargs["decoder_input_ids"]
            expand = prefix.shape[0] // source_ids.shape[0]
            mask = None if source_mask is None else source_mask.repeat_interleave(expand, dim=0)
            try:
                for member in range(1, self.ensemble_passes):
                    self._switch.member = member
                    if member not in encoded:
                        encoder_out = hf_model.get_encoder()(input_ids=source_ids, attention_mask=source_mask)
                        encoded[member] = encoder_out.last_hidden_state.repeat_interleave(expand, dim=0)
                    out = hf_model(encoder_outputs=(encoded[member],), attention_mask=mask, decoder_input_ids=prefix,
                                   use_cache=False)
                    last.append(out.logits[:, -1].float())
            finally:
                self._switch.member = 0
            logits = output.logits.clone()
            ensemble = average_passes(last, self.ensemble_average)
            logits[:, -1] = ensemble.to(logits.dtype)
            output.logits = logits
            return output

        handle = hf_model.register_forward_hook(add_members, with_kwargs=True)
        self._switch.member = 0
        try:
            yield
        finally:
            handle.remove()
            self._switch.reset()

    def describe(self) -> dict[str, Any]:  # noqa: D102
        info = super().describe()
        info.update({"train_passes": self.train_passes, "ensemble_passes": self.ensemble_passes,
                     "ensemble_average": self.ensemble_average})
        return info


def _replace_last(output: Any, ensemble: torch.Tensor) -> Any:
    """``output`` with the last position's logits replaced by the ensemble's (generation step)."""
    logits = output.logits.clone()
    logits[:, -1] = ensemble.to(logits.dtype)
    output.logits = logits
    return output


def average_passes(outputs: list[torch.Tensor], mode: str) -> torch.Tensor:
    """Average N passes: ``log(mean softmax)`` (``probs``) or mean logits; regression: mean."""
    stacked = torch.stack(outputs)
    if mode == "logits" or stacked.shape[-1] == 1:
        return stacked.mean(0)
    # log(mean_i softmax_i) computed stably as logsumexp_i(log_softmax_i) - log N
    log_probs = torch.log_softmax(stacked.float(), dim=-1)
    return (torch.logsumexp(log_probs, dim=0) - torch.log(torch.tensor(float(len(outputs))))).to(stacked.dtype)
