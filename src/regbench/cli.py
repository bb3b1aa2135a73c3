"""Command-line checks that run before Hydra composes the config (no torch imports here).

Hydra names a missing option of a nested group (``task=glue/sst3``) without listing the valid
ones; :func:`check_group_overrides` prints them and exits before anything else happens. It reads the
overrides with Hydra's own parser, so sweeps (``a,b``), ``choice(...)`` and multi-selections
(``regularizer=[a,b]``, ``logger=[wandb,tensorboard]``) are checked option by option; options of a
user's ``--config-dir`` / ``hydra.searchpath`` folders count too. A method listed twice, and
regularizer parameters given at the former flat path (``regularizer.rate=``), are refused with the
form that works.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any


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


def _selections(override: Any) -> list[list[str]]:
    """Every option list an override selects: one per sweep value; a multi-selection is one list."""
    values = list(override.sweep_iterator()) if override.is_sweep_override() else [override.value()]
    return [[str(v) for v in value] if isinstance(value, list) else [str(value)] for value in values if value is not None]


def _fail(message: str) -> None:
    sys.stderr.write(message)
    raise SystemExit(2)


def check_group_overrides(argv: list[str], conf_dir: Path) -> None:
    """Exit with the list of valid options when a ``group=option`` override names a missing option."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    conf_dirs = [conf_dir, *extra_config_dirs(argv)]
    args = [a for a in argv if not a.startswith("-") and "=" in a]
    try:
        overrides = OverridesParser.create().parse_overrides(args)
    except HydraException:
        return  # Hydra reports its own grammar errors
    for override in overrides:
        key = override.key_or_group
        if key.startswith("hydra") or override.is_delete():
            continue
        flat = key.removeprefix("regularizer.")
        methods = {o for d in conf_dirs if (d / "regularizer").is_dir() for o in group_options(d, "regularizer")}
        if key.startswith("regularizer.") and "." not in flat and flat not in methods:
            _fail(f"{key}: regularizer parameters are addressed as regularizer.<method>.<param> "
                  f"(e.g. regularizer.tlm.keep_rate=0.95, regularizer.dropout.p=0.2)\n")
        if "." in key or not any((d / key).is_dir() for d in conf_dirs):
            continue
        valid = sorted({option for d in conf_dirs if (d / key).is_dir() for option in group_options(d, key)})
        for chosen in _selections(override):
            missing = [c for c in chosen if c and c != "null" and c not in valid]
            if missing:
                _fail(f"Unknown option {missing[0]!r} for config group '{key}'. Valid options:\n"
                      + "".join(f"  {key}={v}\n" for v in valid))
            repeated = sorted({c for c in chosen if chosen.count(c) > 1})
            if repeated:
                _fail(f"{key}={chosen}: {repeated[0]!r} is listed twice; each option can be selected once\n")
