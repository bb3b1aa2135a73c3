"""The training entry point: ``python train.py ...`` in a checkout, ``regbench train ...`` when
installed (same arguments: Hydra overrides, ``-m`` sweeps, ``--cfg job``, ``--config-dir DIR``).

The configs are the package's ``conf/`` (in a checkout a link to the repository's ``conf/``; in a
wheel a copy), so an installed regbench needs no checkout. A user's own config folder joins the
search path with Hydra's ``--config-dir DIR`` (its groups and options are added to the shipped
ones; a file of the same name wins) or ``hydra.searchpath=[file:///abs/dir]``.

Kept light on purpose: composing the config (``--help``, ``--cfg job``) must not import torch.
"""

from __future__ import annotations

import sys
from pathlib import Path

CONF_DIR = Path(__file__).resolve().parent / "conf"
CONFIG_NAME = "config"


def train(cfg):
    from regbench.train import run

    return run(cfg)


def main(argv: list[str] | None = None) -> None:
    """Run the Hydra app on ``argv`` (default ``sys.argv[1:]``).

    ``sys.argv[0]`` must stay a file that re-runs this app: Lightning starts DDP ranks by running
    ``python <sys.argv[0]> <overrides>``, so ``regbench train`` points it at this module's file.
    """
    import hydra

    from regbench.cli import check_group_overrides
    from regbench.extras import MissingExtraError, check_argv_extras

    argv = list(sys.argv[1:] if argv is None else argv)
    check_group_overrides(argv, CONF_DIR)
    try:
        check_argv_extras(argv)
    except MissingExtraError as err:
        sys.stderr.write(f"{err}\n")
        raise SystemExit(2) from None
    sys.argv = [sys.argv[0], *argv]
    hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name=CONFIG_NAME)(train)()


if __name__ == "__main__":
    main()
