"""Grid expansion and validation of sweep files (regbench.sweep.spec)."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from regbench.sweep.spec import SweepSpecError, load_sweep, parse_sweep

SWEEPS_DIR = Path(__file__).resolve().parents[2] / "sweeps"


def small_sweep(**changes):
    raw = {
        "name": "toy",
        "axes": {
            "regularizer": [
                "none",
                {"label": "tlm", "overrides": {"regularizer": "tlm", "trainer.max_epochs": 12}, "grid": {"regularizer.rate": [0.5, 0.9]}},
            ],
            "task": ["glue/rte", "glue/mrpc"],
            "seed": [1, 2],
        },
        "fixed": {"data.batch_size": 8, "trainer.max_epochs": 3},
        "scales": {
            "full": {"fixed": {"backbone": "bert-base-cased"}},
            "mini": {"fixed": {"backbone": "minilm-l6", "trainer.max_steps": 4}, "axes": {"seed": [7]}},
        },
        "report": {"rows": ["regularizer"], "column": "task", "metric": "validation/accuracy"},
    }
    raw.update(changes)
    return raw


def test_grid_expansion_produces_exactly_the_expected_overrides():
    cells = parse_sweep(small_sweep()).cells("full")
    got = [(c.id, c.overrides) for c in cells]
    base = {"data.batch_size": 8, "backbone": "bert-base-cased"}
    expected = []
    for reg_id, reg in [
        ("none", {"trainer.max_epochs": 3, "regularizer": "none"}),
        ("tlm-rate-0.5", {"regularizer": "tlm", "trainer.max_epochs": 12, "regularizer.rate": 0.5}),
        ("tlm-rate-0.9", {"regularizer": "tlm", "trainer.max_epochs": 12, "regularizer.rate": 0.9}),
    ]:
        for task in ["glue/rte", "glue/mrpc"]:
            for seed in [1, 2]:
                expected.append((f"{reg_id}__{task.replace('/', '-')}__seed{seed}", {**base, **reg, "task": task, "seed": seed}))
    assert got == expected
    # order of the overrides shows precedence: axes after fixed values
    assert list(cells[4].overrides) == ["data.batch_size", "backbone", "regularizer", "trainer.max_epochs", "regularizer.rate", "task", "seed"]


def test_scale_replaces_axes_and_adds_fixed_overrides():
    sweep = parse_sweep(small_sweep())
    mini = sweep.cells("mini")
    assert len(mini) == 3 * 2 * 1
    assert mini[0].overrides == {
        "data.batch_size": 8, "trainer.max_epochs": 3, "backbone": "minilm-l6", "trainer.max_steps": 4,
        "regularizer": "none", "task": "glue/rte", "seed": 7,
    }
    assert {c.labels["regularizer"] for c in mini} == {"none", "tlm rate=0.5", "tlm rate=0.9"}


def test_unknown_scale_is_a_clear_error():
    with pytest.raises(SweepSpecError, match="unknown scale 'huge'"):
        parse_sweep(small_sweep()).cells("huge")


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"fixed": {"hydra.sweep.dir": "/x"}}, "not a plain config key"),
        ({"fixed": {"hydra/launcher": "submitit_slurm"}}, "not a plain config key"),
        ({"scales": {"full": {}}}, "at least 'full' and 'mini'"),
        ({"axes": {"task": []}}, "non-empty list"),
        ({"axes": {"task": ["glue/rte", "glue/rte"]}}, "duplicate labels"),
        ({"axes": {"regularizer": [{"overrides": {"regularizer": "tlm"}}]}}, "needs a 'label'"),
        ({"colour": "red"}, "unknown key"),
        ({"report": {"rows": ["seed"], "column": "seed", "metric": "validation/accuracy"}}, "column must be an axis"),
        ({"report": {"rows": ["regularizer"], "metric": {"glue/rte": "validation/accuracy"}}}, "no metric for column 'glue/mrpc'"),
        ({"report": {"rows": ["regularizer"], "metric": "validation/accuracy", "paper": {"tlm": {"glue/rte": 70.0}}}}, "not a full-scale row"),
        ({"report": {"rows": ["regularizer"], "metric": "validation/accuracy", "paper": {"none": {"glue/sst2": 90.0}}}}, "not full-scale columns"),
    ],
)
def test_malformed_sweeps_fail_with_the_offending_key(changes, message):
    with pytest.raises(SweepSpecError, match=message):
        parse_sweep(small_sweep(**changes))


def test_colliding_cell_ids_are_refused():
    raw = small_sweep(axes={"task": ["glue/rte", "glue rte"], "regularizer": ["none"], "seed": [1]})
    with pytest.raises(SweepSpecError, match="same id"):
        parse_sweep(raw)


@pytest.mark.parametrize("path", sorted(SWEEPS_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_sweeps_load_and_mini_keeps_the_grid_shape(path):
    sweep = load_sweep(path)
    full, mini = sweep.axes_for("full"), sweep.axes_for("mini")
    assert list(full) == list(mini)
    assert [len(v) for a, v in full.items() if a not in ("backbone", "seed")] == [
        len(v) for a, v in mini.items() if a not in ("backbone", "seed")
    ]
    assert len(sweep.cells("mini")) <= 60  # a laptop runs the mini table in minutes
    assert sweep.name == path.stem


def test_shipped_paper_numbers_are_only_the_verified_ones():
    """Every paper number in sweeps/ was checked against its source; anything new must be too."""
    numbers = {
        (p.stem, row, col): value
        for p in sorted(SWEEPS_DIR.glob("*.yaml"))
        for row, cols in load_sweep(p).report.paper.items()
        for col, value in cols.items()
        if value is not None
    }
    assert numbers == {("tlm_d2t", "tlm", "d2t/rotowire"): 18.93}  # abstract of arXiv 2310.18738


def test_required_tables_exist():
    names = {p.stem for p in SWEEPS_DIR.glob("*.yaml")}
    assert {"tlm_glue", "tlm_clue", "tlm_d2t", "mixout_glue", "verylarge_dropout_glue", "lora_dropout_glue"} <= names
    tlm = load_sweep(SWEEPS_DIR / "tlm_glue.yaml")
    assert [v.label for v in tlm.axes["backbone"]] == ["bert-base-cased", "bert-large-cased"]
    assert [v.label for v in tlm.axes["regularizer"]] == ["attention_dropout", "drophead", "tlm"]


@pytest.mark.parametrize("path", sorted(SWEEPS_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_sweeps_set_only_parameters_their_configs_have(path):
    """`regularizer.<key>` / `task.<key>` / `backbone.<key>` overrides must name keys of the chosen
    option's YAML (checked for every option that exists in conf/; a typo would otherwise only
    surface as a failed run)."""
    conf = SWEEPS_DIR.parent / "conf"
    sweep = load_sweep(path)
    for scale in sweep.scales:
        for cell in sweep.cells(scale):
            for key, value in cell.overrides.items():
                group, _, param = key.partition(".")
                option = cell.overrides.get(group)
                option_file = conf / group / f"{option}.yaml"
                if not param or not isinstance(option, str) or not option_file.is_file():
                    continue
                known = OmegaConf.load(option_file)
                assert OmegaConf.select(known, param, default="<absent>") != "<absent>", (
                    f"{path.name} [{scale}] {cell.id}: {key}={value!r} but {option_file.relative_to(conf.parent)} has no '{param}'"
                )


def test_cli_list_shows_every_sweep_with_its_run_counts(capsys):
    from regbench.sweep.cli import main

    assert main(["list", "--project-dir", str(SWEEPS_DIR.parent)]) == 0
    out = capsys.readouterr().out
    assert "mixout_glue" in out and "full: 320 runs, mini: 48 runs" in out
    assert len(out.strip().splitlines()) == len(list(SWEEPS_DIR.glob("*.yaml")))
