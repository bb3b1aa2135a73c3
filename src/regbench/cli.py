"""Command-line checks that run before Hydra composes the config (no torch imports here).

Hydra names a missing option of a nested group (``task=glue/sst3``) without listing the valid
ones; :func:`check_group_overrides` prints them and exits before anything else happens.
"""

from __future__ import annotations

import sys
from pathlib import Path


def group_options(conf_dir: Path, group: str) -> list[str]:
    """Options of a config group: YAML files under ``conf/<group>``, nested ones as ``a/b``."""
    root = conf_dir / group
    return sorted(str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.yaml"))


def extra_config_dirs(argv: list[str]) -> list[Path]:
    """Folders a user added to Hydra's search path: ``--config-dir``/``-cd`` and ``hydra.searchpath``."""
    dirs, i = [], 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("--config-dir", "-cd") and i + 1 < len(argv):
            dirs.append(argv[i + 1])
            i += 1
        elif arg.startswith("--config-dir="):
            dirs.append(arg.split("=", 1)[1])
        elif arg.lstrip("+").startswith("hydra.searchpath="):
            entries = arg.split("=", 1)[1].strip("[]").split(",")
            dirs += [e.strip().removeprefix("file://") for e in entries if not e.strip().startswith("pkg://")]
        i += 1
    return [Path(d).expanduser() for d in dirs if d]


def check_group_overrides(argv: list[str], conf_dir: Path) -> None:
    """Exit with the list of valid options when a ``group=option`` override names a missing option
    (options of a user's ``--config-dir`` / ``hydra.searchpath`` folders count too)."""
    conf_dirs = [conf_dir, *extra_config_dirs(argv)]
    for arg in argv:
        if arg.startswith("-") or "=" not in arg:
            continue
        key, _, value = arg.lstrip("+").partition("=")
        if key.startswith(("~", "hydra")) or "." in key or not value or not any((d / key).is_dir() for d in conf_dirs):
            continue
        valid = sorted({option for d in conf_dirs if (d / key).is_dir() for option in group_options(d, key)})
        # a sweep `a,b`, `choice(a,b)`, or a list of options `[a,b]` (logger=[wandb,tensorboard])
        inner = value.removeprefix("choice(").removesuffix(")").removeprefix("[").removesuffix("]")
        choices = [v.strip() for v in inner.split(",")]
        missing = [c for c in choices if c and c != "null" and c not in valid]
        if missing:
            sys.stderr.write(f"Unknown option {missing[0]!r} for config group '{key}'. Valid options:\n")
            sys.stderr.write("".join(f"  {key}={v}\n" for v in valid))
            raise SystemExit(2)
