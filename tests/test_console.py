"""The `regbench` command's dispatch and the early checks for optional extras (fast; the
installed-wheel run is tests/test_installed.py, slow)."""

from __future__ import annotations

import importlib.util

import pytest

from regbench.console import main


def test_help_and_unknown_commands(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(f"regbench {c}" in out for c in ("train", "sweep", "export", "predict"))
    assert main(["fly"]) == 2 and "unknown command 'fly'" in capsys.readouterr().err


def test_sweep_subcommands_are_the_sweep_cli(capsys):
    assert main(["sweep", "list"]) == 0
    assert "tlm_glue" in capsys.readouterr().out


def test_export_errors_are_one_line_not_a_traceback(tmp_path, capsys):
    assert main(["export", str(tmp_path / "nowhere"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "not a run dir" in err and "Traceback" not in err


@pytest.fixture
def without(monkeypatch):
    def hide(*modules):
        real = importlib.util.find_spec
        monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in modules else real(name, *a))

    return hide


def test_missing_extras_fail_early_with_the_install_command(without):
    from regbench.extras import MissingExtraError, check_argv_extras, check_config_extras
    from tests.conftest import compose_config

    without("hydra_plugins.hydra_submitit_launcher")
    with pytest.raises(MissingExtraError, match=r"launcher=slurm needs .*regbench\[slurm\]"):
        check_argv_extras(["-m", "launcher=slurm", "seed=1,2"])
    check_argv_extras(["seed=1"])  # nothing optional asked for
    without("sacrebleu")
    with pytest.raises(MissingExtraError, match=r"task d2t/e2e .*regbench\[d2t\]"):
        check_config_extras(compose_config(["task=d2t/e2e", "backbone=bart-base"]))
    check_config_extras(compose_config(["task=glue/rte"]))
