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
                {"label": "tlm", "overrides": {"regularizer": "tlm", "trainer.max_epochs": 12}, "grid": {"regularizer.tlm.p": [0.5, 0.9]}},
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
        ("tlm-p-0.5", {"regularizer": "tlm", "trainer.max_epochs": 12, "regularizer.tlm.p": 0.5}),
        ("tlm-p-0.9", {"regularizer": "tlm", "trainer.max_epochs": 12, "regularizer.tlm.p": 0.9}),
    ]:
        for task in ["glue/rte", "glue/mrpc"]:
            for seed in [1, 2]:
                expected.append((f"{reg_id}__{task.replace('/', '-')}__seed{seed}", {**base, **reg, "task": task, "seed": seed}))
    assert got == expected
    # order of the overrides shows precedence: axes after fixed values
    assert list(cells[4].overrides) == ["data.batch_size", "backbone", "regularizer", "trainer.max_epochs", "regularizer.tlm.p", "task", "seed"]


def test_scale_replaces_axes_and_adds_fixed_overrides():
    sweep = parse_sweep(small_sweep())
    mini = sweep.cells("mini")
    assert len(mini) == 3 * 2 * 1
    assert mini[0].overrides == {
        "data.batch_size": 8, "trainer.max_epochs": 3, "backbone": "minilm-l6", "trainer.max_steps": 4,
        "regularizer": "none", "task": "glue/rte", "seed": 7,
    }
    assert {c.labels["regularizer"] for c in mini} == {"none", "tlm p=0.5", "tlm p=0.9"}


def test_a_scale_can_select_a_subset_of_rows_and_columns():
    raw = small_sweep()
    raw["scales"]["mini"]["select"] = {"regularizer": ["tlm p=0.9"], "task": ["glue/mrpc"]}
    cells = parse_sweep(raw).cells("mini")
    assert [c.id for c in cells] == ["tlm-p-0.9__glue-mrpc__seed7"]
    assert cells[0].overrides["regularizer.tlm.p"] == 0.9  # the full grid's definition of the row


def test_a_value_that_needs_something_is_kept_and_says_what():
    raw = small_sweep()
    raw["axes"]["regularizer"].append({"label": "later", "needs": "a method still being written",
                                       "overrides": {"regularizer": ["a", "b"]}})
    cells = parse_sweep(raw).cells("full")
    assert [c.needs for c in cells if c.labels["regularizer"] == "later"] == [("a method still being written",)] * 4
    assert all(c.needs == () for c in cells if c.labels["regularizer"] != "later")


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
        ({"report": {"rows": ["regularizer"], "metric": "validation/accuracy",
                     "paper": [{"stat": "mean", "source": "T1", "values": {"tlm": {"glue/rte": 70.0}}}]}}, "not a full-scale row"),
        ({"report": {"rows": ["regularizer"], "metric": "validation/accuracy",
                     "paper": [{"stat": "mean", "source": "T1", "values": {"none": {"glue/sst2": 90.0}}}]}}, "not full-scale columns"),
        ({"report": {"rows": ["regularizer"], "metric": "validation/accuracy", "paper": {"none": {"glue/rte": 90.0}}}},
         r"report.paper must be a list of series"),
        ({"report": {"rows": ["regularizer"], "metric": "validation/accuracy",
                     "paper": [{"stat": "median", "source": "T1", "values": {}}]}}, r"paper\[0\].stat must be one of"),
        ({"report": {"rows": ["regularizer"], "metric": "validation/accuracy",
                     "paper": [{"stat": "mean", "values": {}}]}}, r"paper\[0\].source is required"),
        ({"report": {"rows": ["regularizer"], "metric": "validation/accuracy",
                     "paper": [{"stat": "mean", "source": "T1", "values": {"none": {"glue/rte": "high"}}}]}}, "is not a number"),
        ({"claims": [{"text": "x", "source": "y", "kind": "better", "axis": "regularizer", "a": "none", "b": "drophead"}]},
         r"claims\[0\].b: \['drophead'\] are not regularizer labels"),
        ({"claims": [{"text": "x", "source": "y", "kind": "bigger", "axis": "regularizer", "a": "none"}]}, "kind must be one of"),
        ({"claims": [{"text": "x", "source": "y", "kind": "better", "axis": "task", "a": "none", "b": "none"}]},
         "axis must be one of the report's row axes"),
        ({"claims": [{"text": "x", "kind": "order", "axis": "regularizer", "order": ["none"]}]}, r"claims\[0\].source is required"),
        ({"claims": [{"text": "x", "source": "y", "kind": "value", "axis": "regularizer", "a": "none"}]}, "paper_value is required"),
        ({"claims": [{"text": "x", "source": "y", "kind": "fewer_chance_runs", "axis": "regularizer", "a": "none",
                      "b": "tlm p=0.5"}]}, "needs report.chance"),
        ({"claims": [{"text": "x", "source": "y", "kind": "better", "axis": "regularizer", "a": "none", "b": "tlm p=0.5",
                      "columns": ["glue/cola"]}]}, r"columns: \['glue/cola'\] are not task labels"),
        ({"scales": {"full": {}, "mini": {"select": {"task": ["glue/cola"]}}}}, r"select.task must be a non-empty list of labels"),
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
def test_shipped_sweeps_load_and_mini_is_a_subset_of_the_full_grid(path):
    sweep = load_sweep(path)
    full, mini = sweep.axes_for("full"), sweep.axes_for("mini")
    assert list(full) == list(mini)
    for axis in full:
        if axis in ("backbone", "seed", "task"):  # replaced: the small backbone, seeds, per-task sizes
            continue
        assert {v.label for v in mini[axis]} <= {v.label for v in full[axis]}, axis
    assert {v.label for v in mini["task"]} <= {v.label for v in full["task"]}
    assert len(sweep.cells("mini")) <= 60  # a laptop runs the mini table in minutes
    assert sweep.name == path.stem


# ../shared/docs/paper-numbers.md, Mixout Tables 1 and 3 (mean (max)) and the Figure 3 counts,
# restated here so that a transcription error in sweeps/mixout_glue.yaml fails a test.
MIXOUT_TABLES = """
| dropout(0.1) + wdecay(0, 0.01) | 56.5 (73.6) | 83.4 (90.4) | 38.8 (63.3) | 82.4 (90.3) |
| wdecay(w_pre, 0.01) | 56.3 (71.5) | 86.2 (91.6) | 41.9 (65.6) | 85.4 (90.5) |
| wdecay(w_pre, 0.04) | 51.5 (70.8) | 85.8 (91.5) | 35.4 (64.7) | 80.7 (90.6) |
| wdecay(w_pre, 0.07) | 57.0 (70.4) | 85.8 (91.0) | 48.1 (63.9) | 89.6 (90.3) |
| wdecay(w_pre, 0.10) | 54.6 (71.1) | 84.2 (91.8) | 45.6 (63.8) | 84.3 (90.1) |
| mixout(w_pre, 0.7) | 61.6 (74.0) | 87.1 (91.1) | 57.4 (62.1) | 89.6 (90.3) |
| mixout(w_pre, 0.8) | 64.0 (74.0) | 89.0 (90.7) | 57.9 (63.8) | 89.4 (90.3) |
| mixout(w_pre, 0.9) | 64.3 (73.3) | 88.2 (91.4) | 55.2 (63.4) | 89.4 (90.0) |
| mixout(w_pre, 0.7) + wdecay(w_pre, 0.01) | 65.3 (74.4) | 87.8 (91.8) | 51.9 (64.0) | 89.6 (90.6) |
| mixout(w_pre, 0.8) + wdecay(w_pre, 0.01) | 62.8 (74.0) | 86.3 (90.9) | 58.3 (65.1) | 89.7 (90.3) |
| mixout(w_pre, 0.9) + wdecay(w_pre, 0.01) | 65.0 (75.5) | 88.6 (91.3) | 58.1 (65.1) | 89.5 (90.0) |
| mixout(w_pre, 0.7), head mixout(w_0, 0.7) | 66.5 (75.5) | 88.1 (92.4) | 58.7 (65.6) | 89.7 (90.6) |
| mixout(w_pre, 0.7), head dropout(0.7) | 57.2 (70.8) | 85.9 (92.5) | 48.9 (64.3) | 89.2 (89.8) |
"""
MIXOUT_FIGURE = {  # failed runs of 20, counted from Figure 3's dots
    "dropout(0.1) + wdecay(0, 0.01)": (12, 13, 7, 2), "wdecay(w_pre, 0.01)": (13, 9, 6, 1),
    "mixout(w_pre, 0.7)": (7, 4, 1, 0), "mixout(w_pre, 0.7) + wdecay(w_pre, 0.01)": (3, 4, 2, 0),
}
MIXOUT_TASKS = ("glue/rte", "glue/mrpc", "glue/cola", "glue/stsb")


def _paper_numbers() -> dict:
    expected = {}
    for line in MIXOUT_TABLES.strip().splitlines():
        row, *cells = [c.strip() for c in line.strip("|").split("|")]
        for task, cell in zip(MIXOUT_TASKS, cells):
            mean, top = cell.replace("(", "").replace(")", "").split()
            expected[("mixout_glue", "mean", row, task)] = float(mean)
            expected[("mixout_glue", "max", row, task)] = float(top)
    for row, counts in MIXOUT_FIGURE.items():
        for task, count in zip(MIXOUT_TASKS, counts):
            expected[("mixout_glue", "chance_runs", row, task)] = float(count)
    for task, value in {"glue/cola": 62.6, "glue/rte": 71.1, "glue/mrpc": 87.3}.items():
        expected[("rdrop_glue", "reported", "rdrop", task)] = value  # secondary: R-Drop issue #30
    return expected


def test_shipped_paper_numbers_are_only_the_verified_ones():
    """Every paper number in sweeps/ was checked against ../shared/docs/paper-numbers.md; anything
    new must be too. Figure-derived and secondary numbers are marked as such."""
    numbers, marks = {}, {}
    for p in sorted(SWEEPS_DIR.glob("*.yaml")):
        for series in load_sweep(p).report.paper:
            marks[(p.stem, series.stat)] = (series.read_off_figure, series.secondary, series.out_of)
            for row, cols in series.values.items():
                for col, value in cols.items():
                    if value is not None:
                        numbers[(p.stem, series.stat, row, col)] = value
    assert numbers == _paper_numbers()
    assert marks == {("mixout_glue", "mean"): (False, False, None), ("mixout_glue", "max"): (False, False, None),
                     ("mixout_glue", "chance_runs"): (True, False, 20), ("rdrop_glue", "reported"): (False, True, None)}


def test_mixout_grid_is_the_papers_tables_1_and_3():
    sweep = load_sweep(SWEEPS_DIR / "mixout_glue.yaml")
    rows = [v.label for v in sweep.axes["regularizer"]]
    assert rows == [line.strip("|").split("|")[0].strip() for line in MIXOUT_TABLES.strip().splitlines()]
    assert [v.label for v in sweep.axes["task"]] == list(MIXOUT_TASKS)
    cells = sweep.cells("full")
    assert len(cells) == 13 * 4 * 20 and {c.overrides["backbone"] for c in cells} == {"bert-large-cased"}
    by_row = {c.labels["regularizer"]: c for c in cells if c.labels["seed"] == "1" and c.labels["task"] == "glue/rte"}
    common = {"optim.lr": 2.0e-5, "optim.warmup_ratio": 0.1, "data.batch_size": 32, "data.max_length": 128,
              "checkpoint.enabled": False, "trainer.max_epochs": 3, "backbone": "bert-large-cased",
              "task": "glue/rte", "seed": 1}
    assert by_row["dropout(0.1) + wdecay(0, 0.01)"].overrides == {
        **common, "regularizer": "dropout", "regularizer.dropout.p": 0.1, "optim.weight_decay": 0.01}
    assert by_row["mixout(w_pre, 0.7), head mixout(w_0, 0.7)"].overrides == {
        **common, "regularizer": "mixout", "regularizer.mixout.p": 0.7, "optim.weight_decay": 0.0}
    assert not any(cell.needs for cell in cells)  # every row runs on the shipped regularizers
    head_table1 = {"regularizer.very_large_dropout.p": 0.1, "optim.weight_decay": 0.0}  # head: dropout + wdecay(0)
    for lam in (0.01, 0.04, 0.07, 0.1):
        assert by_row[f"wdecay(w_pre, {lam:.2f})"].overrides == {
            **common, **head_table1, "regularizer": ["dropout", "very_large_dropout", "wdecay"],
            "regularizer.dropout.p": 0.0, "regularizer.wdecay.target": "pretrained", "regularizer.wdecay.strength": lam}
    for p in (0.7, 0.8, 0.9):
        mixout = {**common, **head_table1, "regularizer": ["mixout", "very_large_dropout", "wdecay"],
                  "regularizer.mixout.p": p, "regularizer.mixout.head": "exclude", "regularizer.wdecay.strength": 0.01}
        assert by_row[f"mixout(w_pre, {p})"].overrides == {
            **mixout, "regularizer.wdecay.target": "zero", "regularizer.wdecay.scope": "head"}
        assert by_row[f"mixout(w_pre, {p}) + wdecay(w_pre, 0.01)"].overrides == {
            **mixout, "regularizer.wdecay.target": "pretrained"}
    assert by_row["mixout(w_pre, 0.7), head dropout(0.7)"].overrides == {
        **common, "regularizer": ["mixout", "very_large_dropout"], "regularizer.mixout.p": 0.7,
        "regularizer.mixout.head": "exclude", "regularizer.very_large_dropout.p": 0.7, "optim.weight_decay": 0.0}


def test_every_mixout_and_rdrop_row_builds_its_regularizers():
    """Each row's regularizer overrides compose (Hydra) and build a stack: names and values are valid,
    and the combination is allowed (checked before any weights load)."""
    from regbench.regularizers import build_regularizer
    from regbench.sweep.launch import format_override
    from tests.conftest import compose_config

    for name in ("mixout_glue", "rdrop_glue"):
        sweep = load_sweep(SWEEPS_DIR / f"{name}.yaml")
        seen = set()
        for cell in sweep.cells("full"):
            label = cell.labels["regularizer"]
            if label in seen:
                continue
            seen.add(label)
            overrides = {k: v for k, v in cell.overrides.items() if k == "regularizer" or k.startswith("regularizer.")}
            cfg = compose_config([format_override(k, v) for k, v in overrides.items()])
            built = build_regularizer(cfg.regularizer)
            wanted = overrides["regularizer"]
            assert built.name == "+".join(wanted if isinstance(wanted, list) else [wanted]), label


def test_rdrop_grid_is_the_repositorys_protocol():
    sweep = load_sweep(SWEEPS_DIR / "rdrop_glue.yaml")
    assert [v.label for v in sweep.axes["regularizer"]] == ["dropout", "rdrop"]
    cells = [c for c in sweep.cells("full") if c.labels["seed"] == "1" and c.labels["regularizer"] == "dropout"]
    # task: (batch, total updates, warmup updates) from the repository's README
    protocol = {"glue/mnli": (32, 123873, 7432), "glue/qnli": (32, 33112, 1986), "glue/qqp": (32, 113272, 28318),
                "glue/rte": (8, 2036, 122), "glue/sst2": (32, 20935, 1256), "glue/mrpc": (16, 2296, 137),
                "glue/cola": (16, 5336, 320), "glue/stsb": (16, 3598, 214)}
    got = {c.labels["task"]: c.overrides for c in cells}
    assert set(got) == set(protocol)
    for task, (batch, total, warmup) in protocol.items():
        o = got[task]
        assert (o["data.batch_size"], o["trainer.max_steps"], o["optim.lr"], o["backbone"]) == (batch, total, 1.0e-5, "bert-base-uncased")
        assert int(o["optim.warmup_ratio"] * total) == warmup, task  # the scheduler's warmup (models/base.py)
    rdrop = next(c for c in sweep.cells("full") if c.labels["regularizer"] == "rdrop")
    assert not rdrop.needs
    assert (rdrop.overrides["regularizer.rdrop.alpha"], rdrop.overrides["regularizer.rdrop.reduction"]) == (0.5, "sum")


def test_required_tables_exist():
    names = {p.stem for p in SWEEPS_DIR.glob("*.yaml")}
    assert {"tlm_glue", "tlm_clue", "tlm_d2t", "mixout_glue", "verylarge_dropout_glue", "lora_dropout_glue",
            "rdrop_glue"} <= names
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
            if cell.needs:  # waits for parameters still being written; `run` refuses it by name
                continue
            for key, value in cell.overrides.items():
                group, _, param = key.partition(".")
                option = cell.overrides.get(group)
                if isinstance(option, list):  # several options of the group: the one the key names
                    option = param.split(".")[0] if param.split(".")[0] in option else None
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
    assert "mixout_glue" in out and "full: 1040 runs, mini: 40 runs" in out
    assert len(out.strip().splitlines()) == len(list(SWEEPS_DIR.glob("*.yaml")))
