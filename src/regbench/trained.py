"""A finished run read back from its run dir: its config, record and trained module.

``regbench export`` and ``regbench predict`` start here. The module is rebuilt exactly as training
built it (``config.yaml`` -> regularizer -> LightningModule from ``backbone.path``), then the
checkpoint's weights are loaded the way a resume loads them (frozen weights, e.g. LoRA's backbone,
come from the rebuilt model; loading stays strict).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class TrainedRunError(ValueError):
    """The run dir cannot be used (unfinished, no checkpoint, sharded checkpoint ...); says why."""


@dataclass
class TrainedRun:
    run_dir: Path
    cfg: Any
    record: dict[str, Any]
    checkpoint: Path
    regularizer: Any
    module: Any
    tokenizer: Any
    backbone_path: str


def find_checkpoint(run_dir: Path, which: str = "best") -> Path:
    """``best`` (best main metric; ``last`` if the run kept no best), ``last``, or a path."""
    if which not in ("best", "last"):
        path = Path(which).expanduser()
        if not path.is_file():
            raise TrainedRunError(f"checkpoint {path} does not exist")
        return path
    folder = run_dir / "checkpoints"
    order = ["best.ckpt", "last.ckpt"] if which == "best" else ["last.ckpt"]
    for name in order:
        path = folder / name
        if path.is_dir():
            raise TrainedRunError(f"{path} is a sharded checkpoint (FSDP/DeepSpeed); consolidate it into one file first")
        if path.is_file():
            return path
    raise TrainedRunError(
        f"{run_dir} has no {' or '.join(order)} in checkpoints/ (trained with checkpoint.enabled=false or "
        f"save_top_k=0?); train with checkpoint.enabled=true to export or predict")


def load_trained_run(run_dir: str | Path, checkpoint: str = "best", allow_unfinished: bool = False) -> TrainedRun:
    """Rebuild the trained module of ``run_dir`` with the weights of ``checkpoint``."""
    from omegaconf import OmegaConf

    run_dir = Path(run_dir).expanduser().resolve()
    config_file, metrics_file = run_dir / "config.yaml", run_dir / "metrics.json"
    if not config_file.is_file():
        raise TrainedRunError(f"{run_dir} is not a run dir (no config.yaml)")
    record = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    if record.get("status") != "ok" and not allow_unfinished:
        raise TrainedRunError(f"{run_dir}: run status is {record.get('status')!r}, not 'ok' "
                              f"({record.get('error') or 'unfinished'}); pass --allow-unfinished to use its checkpoint anyway")
    ckpt_path = find_checkpoint(run_dir, checkpoint)
    cfg = OmegaConf.load(config_file)

    import torch

    from regbench.logs import setup_run_logging
    from regbench.models import build_module
    from regbench.models.backbone import check_backbone, load_tokenizer
    from regbench.regularizers import build_regularizer

    setup_run_logging()
    backbone_path = check_backbone(cfg.backbone)
    regularizer = build_regularizer(cfg.regularizer)
    module = build_module(cfg, regularizer)
    checkpoint_data = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    module.on_load_checkpoint(checkpoint_data)
    module.load_state_dict(checkpoint_data["state_dict"])
    module.eval()
    tokenizer = load_tokenizer(backbone_path, str(cfg.backbone.kind))
    return TrainedRun(run_dir, cfg, record, ckpt_path, regularizer, module, tokenizer, backbone_path)
