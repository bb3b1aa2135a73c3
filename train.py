"""regbench entry point: `python train.py task=glue/sst2 regularizer=tlm` (Hydra overrides).

Kept thin on purpose: composing the config (`--help`, `--cfg job`) must not import torch.
"""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

CONF_DIR = Path(__file__).resolve().parent / "conf"


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    from regbench.train import run

    return run(cfg)


if __name__ == "__main__":
    from regbench.cli import check_group_overrides

    check_group_overrides(sys.argv[1:], CONF_DIR)
    main()
