"""``regbench export``: a finished run as a Hugging Face model folder.

The folder holds ``save_pretrained`` of the model and the tokenizer, a model card (``README.md``:
config, metrics, regularizer, how to load it) and the run's ``config.yaml``/``metrics.json`` as
``regbench_config.yaml``/``regbench_metrics.json``. It loads with plain transformers (the model's
own class, e.g. ``AutoModelForSequenceClassification.from_pretrained(folder)``): what regularizers
changed for training only is undone generically here, never per method:

- PEFT models (LoRA, LoRA Dropout): ``lora="merged"`` (default) folds the adapters into the
  weights (``merge_and_unload``); ``lora="adapter"`` saves PEFT's adapter folder instead (load
  it with ``peft.AutoPeftModelForSequenceClassification``; the base model is the backbone's path);
- weight parametrizations (Mixout) are removed in eval mode, where they are the identity;
- a hooked attention implementation (TLM, DropHead) is switched back to its base (sdpa/eager), on
  every config object the model's modules hold (regularizers.attention_hooks);
- dropout rates a regularizer changed in the model config are reset to the backbone's own.

The export is checked before it is reported: the saved folder is loaded back and its outputs on a
few validation rows must equal the trained model's. A regularizer whose predictions are not the
plain model's (LoRA Dropout's test-time ensemble) is named in the card and on the console.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from regbench.config import method_names
from regbench.trained import TrainedRun, TrainedRunError, load_trained_run

LORA_MODES = ("merged", "adapter")


def _strip_parametrizations(model: Any) -> int:
    from torch.nn.utils import parametrize

    count = 0
    for module in model.modules():
        if parametrize.is_parametrized(module):
            for name in list(module.parametrizations):
                parametrize.remove_parametrizations(module, name, leave_parametrized=True)
                count += 1
    return count


def _restore_attention(model: Any) -> str | None:
    from regbench.regularizers.attention_hooks import uninstall_attention_hooks

    return uninstall_attention_hooks(model)


def _restore_dropout(config: Any, original: Any, prefix: str = "") -> list[str]:
    """Reset dropout-like config values a regularizer changed back to the backbone's own."""
    changed = []
    for key, value in original.to_dict().items():
        if "drop" in key and isinstance(value, (int, float)) and not isinstance(value, bool) \
                and getattr(config, key, value) != value:
            changed.append(f"{prefix}{key}: {getattr(config, key)} -> {value}")
            setattr(config, key, value)
    for key in getattr(original, "sub_configs", None) or {}:
        sub, sub_original = getattr(config, key, None), getattr(original, key, None)
        if hasattr(sub, "to_dict") and hasattr(sub_original, "to_dict"):
            changed += _restore_dropout(sub, sub_original, f"{prefix}{key}.")
    return changed


def _sample_batch(run: TrainedRun, rows: int = 4) -> dict:
    """A few rows of the run's first evaluation split, tokenized and collated as in training."""
    from regbench.data.datamodule import TaskDataModule
    from regbench.models import encoding_factory

    data_cfg = run.cfg.data.copy()
    data_cfg.eval_limit = rows
    datamodule = TaskDataModule(run.cfg.task, data_cfg, run.tokenizer, seed=int(run.cfg.seed),
                                encoding=encoding_factory(run.cfg))
    datamodule.setup("validate")
    batch = next(iter(datamodule.val_dataloader()[0]))
    if "choice_input_ids" in batch:  # instruction tuning: the multiple-choice sequences the scorer reads
        return {"input_ids": batch["choice_input_ids"], "attention_mask": batch["choice_attention_mask"]}
    return {k: v for k, v in batch.items()
            if k not in ("labels", "example_id", "references", "source", "prompt_input_ids", "prompt_attention_mask")}


def _output_kind(cfg: Any) -> str:
    """``task.kind``, or ``causal_lm`` for a decoder-only backbone's language-model tasks."""
    kind = str(cfg.task.kind)
    if str(cfg.backbone.get("kind")) == "decoder" and kind not in ("classification", "regression"):
        return "causal_lm"
    return kind


def _outputs(model: Any, batch: dict) -> Any:
    import torch

    with torch.no_grad():
        out = model(**batch)
    return out.logits if hasattr(out, "logits") else out[0]


def export_run(run_dir: str | Path, out_dir: str | Path, checkpoint: str = "best", lora: str = "merged",
               allow_unfinished: bool = False, verify: bool = True) -> dict[str, Any]:
    """Export ``run_dir`` to ``out_dir``; returns what was done (also written into the card)."""
    import torch
    from transformers import AutoConfig

    if lora not in LORA_MODES:
        raise TrainedRunError(f"lora={lora!r}: one of {LORA_MODES}")
    out_dir = Path(out_dir).expanduser().resolve()
    if out_dir.exists() and any(out_dir.iterdir()):
        raise TrainedRunError(f"{out_dir} exists and is not empty; choose a new folder")
    run = load_trained_run(run_dir, checkpoint, allow_unfinished)
    model = run.module.model.eval()
    batch = _sample_batch(run) if verify else None
    notes: dict[str, Any] = {"checkpoint": str(run.checkpoint), "lora": None, "parametrizations_removed": 0,
                             "attention": None, "dropout_restored": [], "prediction_differs": False}
    if batch is not None:
        reference = _outputs(model, batch)
        regularized = (run.regularizer.predict_logits(model, dict(batch)) if run.cfg.task.kind != "generation"
                       else reference)
        notes["prediction_differs"] = not torch.allclose(reference, regularized, atol=1e-5)

    from peft import PeftModel

    adapter = isinstance(model, PeftModel) and lora == "adapter"
    if isinstance(model, PeftModel):
        notes["lora"] = lora
        if not adapter:
            model = model.merge_and_unload()
    target = model.get_base_model() if adapter else model
    notes["parametrizations_removed"] = _strip_parametrizations(target)
    notes["attention"] = _restore_attention(target)
    notes["dropout_restored"] = _restore_dropout(target.config, AutoConfig.from_pretrained(run.backbone_path))

    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    run.tokenizer.save_pretrained(out_dir)
    shutil.copyfile(run.run_dir / "config.yaml", out_dir / "regbench_config.yaml")
    if (run.run_dir / "metrics.json").is_file():
        shutil.copyfile(run.run_dir / "metrics.json", out_dir / "regbench_metrics.json")
    if batch is not None:
        notes["verified_max_abs_diff"] = _verify(out_dir, model, adapter, batch, reference, _output_kind(run.cfg))
    (out_dir / "README.md").write_text(model_card(run, notes, adapter))
    return notes


def _verify(out_dir: Path, model: Any, adapter: bool, batch: dict, reference: Any, task_kind: str) -> float:
    """Load the saved folder back as a user would; its outputs must equal the trained model's."""
    if adapter:
        import peft

        loaded = getattr(peft, _loader_class("", task_kind, True).rsplit(".", 1)[1]).from_pretrained(out_dir)
    else:
        loaded = type(model).from_pretrained(out_dir)
    diff = float((_outputs(loaded.eval(), batch) - reference).abs().max())
    if diff > 1e-4:
        raise TrainedRunError(f"exported model at {out_dir} does not reproduce the trained model (max |diff| {diff:.2e})")
    return diff


def _loader_class(model_type: str, task_kind: str, adapter: bool) -> str:
    if adapter:
        return {"generation": "peft.AutoPeftModelForSeq2SeqLM", "causal_lm": "peft.AutoPeftModelForCausalLM"}.get(
            task_kind, "peft.AutoPeftModelForSequenceClassification")
    return f"transformers.{model_type}"


def model_card(run: TrainedRun, notes: dict[str, Any], adapter: bool) -> str:
    """The export's README.md: YAML front matter, results, regularizer, export notes, full config."""
    from omegaconf import OmegaConf

    cfg, record = run.cfg, run.record
    task = f"{cfg.task.family}/{cfg.task.name}"
    base_model = str(cfg.backbone.path)
    front = {"library_name": "peft" if adapter else "transformers", "base_model": base_model,
             "tags": ["regbench", f"regularizer:{method_names(cfg.regularizer)}", f"task:{task}"],
             "pipeline_tag": {"generation": "text2text-generation", "causal_lm": "text-generation"}.get(
                 _output_kind(cfg), "text-classification")}
    if cfg.task.get("hub") and cfg.task.hub.get("path") and not cfg.task.get("data_dir"):
        front["datasets"] = [str(cfg.task.hub.path)]
    model_type = type(run.module.model.get_base_model() if hasattr(run.module.model, "get_base_model") else run.module.model).__name__
    lines = ["---", *_yaml_lines(front), "---", "",
             f"# {cfg.backbone.name} fine-tuned on {task} with `{method_names(cfg.regularizer)}` (regbench)", "",
             f"Trained by regbench (run dir `{run.run_dir}`), seed {cfg.seed}, weights of checkpoint "
             f"`{Path(notes['checkpoint']).name}`. Base model: `{base_model}`.", "",
             "## Results (validation)", "",
             "| metric | best | final |", "|---|---|---|"]
    best, final = record.get("best") or {}, record.get("final") or {}
    for key in sorted(set(best) | set(final)):
        lines.append(f"| {key} | {_num(best.get(key))} | {_num(final.get(key))} |")
    lines += ["", f"Main metric: `{record.get('main_metric')}`; best at step {record.get('best_step')}; "
              f"status `{record.get('status')}`.", "",
              "## Regularizer", "", "```json", json.dumps(record.get("regularizer_params") or {"name": method_names(cfg.regularizer)},
                                                         indent=2, default=str), "```", "",
              "## Export", ""]
    if notes["lora"] == "merged":
        lines.append("- LoRA adapters merged into the weights (`merge_and_unload`): a plain transformers model.")
    elif notes["lora"] == "adapter":
        lines.append(f"- PEFT adapter only (plus the trained head); the base model is `{base_model}`.")
    if notes["parametrizations_removed"]:
        lines.append(f"- {notes['parametrizations_removed']} weight parametrizations (training-time only) removed.")
    if notes["attention"]:
        lines.append(f"- attention implementation reset: {notes['attention']} (the hook acts in training only).")
    if notes["dropout_restored"]:
        lines.append("- dropout rates in `config.json` reset to the backbone's own (training used other values): "
                     + "; ".join(notes["dropout_restored"]) + ".")
    if notes["prediction_differs"]:
        lines.append(f"- **Note**: regbench evaluated this run through `{method_names(cfg.regularizer)}`'s own prediction "
                     "(e.g. a test-time ensemble); this folder holds the plain model, whose outputs differ.")
    if "verified_max_abs_diff" in notes:
        lines.append(f"- checked: loaded back, its outputs equal the trained model's (max |diff| "
                     f"{notes['verified_max_abs_diff']:.1e}).")
    lines += ["", "## Use", "", "```python",
              f"from {_loader_class(model_type, _output_kind(cfg), adapter).rsplit('.', 1)[0]} import "
              f"{_loader_class(model_type, _output_kind(cfg), adapter).rsplit('.', 1)[1]}",
              "from transformers import AutoTokenizer", "",
              f"model = {_loader_class(model_type, _output_kind(cfg), adapter).rsplit('.', 1)[1]}.from_pretrained(\"<this folder>\")",
              "tokenizer = AutoTokenizer.from_pretrained(\"<this folder>\")", "```", ""]
    if cfg.task.get("label_names"):
        lines += [f"Labels (id -> name): {dict(enumerate(cfg.task.label_names))}.", ""]
    lines += ["## Training config (resolved)", "", "```yaml", OmegaConf.to_yaml(cfg).rstrip(), "```", ""]
    return "\n".join(lines)


def _num(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "—"


def _yaml_lines(mapping: dict[str, Any]) -> list[str]:
    import yaml

    return yaml.safe_dump(mapping, sort_keys=False, allow_unicode=True).rstrip().splitlines()
