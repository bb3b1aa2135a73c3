"""Issue 13, items 6, 7 and 8: bad data files, corrupt state and unsafe loads fail early, by file, row and field."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.conftest import compose_config
from tests.fixtures import write_glue_task
from tests.reliability.conftest import record


def _glue(task: str, root: Path) -> Path:
    return write_glue_task(root / task, task, n_train=12, n_dev=6)


def _load(task: str, data_dir: Path, *extra: str):
    from regbench.data import load_task

    return load_task(compose_config([f"task=glue/{task}", f"task.data_dir={data_dir}", *extra]).task)


# -- item 6: data files -----------------------------------------------------------------------------------
def test_a_short_glue_row_is_an_error_naming_file_line_and_column(tmp_path):
    from regbench.data import DataError

    data = _glue("rte", tmp_path)
    lines = (data / "train.tsv").read_text().splitlines()
    lines[4] = "\t".join(lines[4].split("\t")[:2])  # index, sentence1: sentence2 and label lost
    (data / "train.tsv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"train\.tsv:5: row has 2 field\(s\), missing sentence2 \(column 'sentence2'\), "
                                        r"label \(column 'label'\)"):
        _load("rte", data)


def test_short_qqp_rows_are_skipped_counted_and_recorded(tmp_path):
    data = _glue("qqp", tmp_path)
    with open(data / "train.tsv", "a") as f:
        f.write("999\t1\t2\tonly one question?\n1000\t3\n")  # as in the official dump
    from regbench.data import collect_skips

    with collect_skips() as skipped:
        raw = _load("qqp", data)
    assert raw["train"].num_rows == 12
    assert skipped == [{"file": str(data / "train.tsv"), "rows": 2, "first_lines": [14, 15],
                        "reason": "too few fields (as in the official dump; the GLUE processors skip them)"}]


@pytest.mark.parametrize("split", ["train.tsv", "dev.tsv"])
def test_a_nan_regression_label_is_an_error_naming_the_row(tmp_path, split):
    """A `nan` STS-B score in dev gave `ok` with NaN metrics; in train it blamed the loss."""
    from regbench.data import DataError

    data = _glue("stsb", tmp_path)
    lines = (data / split).read_text().splitlines()
    lines[3] = "\t".join([*lines[3].split("\t")[:-1], "nan"])
    (data / split).write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=rf"{split}:4: label 'nan' is not a finite number"):
        _load("stsb", data)


def test_non_utf8_bytes_name_the_file_and_line(tmp_path):
    from regbench.data import DataError

    data = _glue("sst2", tmp_path)
    raw = (data / "dev.tsv").read_bytes().split(b"\n")
    raw[2] = b"caf\xe9 au lait\t1"  # latin-1
    (data / "dev.tsv").write_bytes(b"\n".join(raw))
    with pytest.raises(DataError, match=r"dev\.tsv:3: bytes b'\\xe9' at column 4 are not UTF-8"):
        _load("sst2", data)


def test_an_empty_train_file_is_named(tmp_path):
    from regbench.data import DataError

    data = _glue("sst2", tmp_path)
    (data / "train.tsv").write_text("")
    with pytest.raises(DataError, match=r"train\.tsv: empty file \(no header row\)"):
        _load("sst2", data)


def test_an_unclosed_quote_in_an_e2e_csv_names_the_line_instead_of_merging_rows(tmp_path):
    """The quote swallowed the line break: two rows became one and a reference was lost."""
    from regbench.data import DataError
    from regbench.data.d2t import parse_e2e_csv

    path = tmp_path / "devset.csv"
    path.write_text('mr,ref\n"name[A], food[B]","A serves B.\n"name[C]","C is a pub."\n"name[D]","D."\n')
    with pytest.raises(DataError, match=r"devset\.csv:2: the row runs over lines 2-3 \(field 'ref' holds a line break"):
        parse_e2e_csv(path)


def test_non_utf8_and_malformed_rows_of_clue_and_d2t_json_name_the_line(tmp_path):
    from omegaconf import OmegaConf

    from regbench.data import DataError
    from regbench.data.clue import read_json_lines
    from regbench.data.d2t import parse_dart_json

    path = tmp_path / "train.json"
    path.write_bytes('{"sentence1": "你好", "sentence2": "好", "label": "1"}\n'.encode() + b'{"sentence1": "\xff"}\n')
    task = OmegaConf.create({"name": "afqmc", "text_keys": ["sentence1", "sentence2"], "label_names": ["0", "1"]})
    with pytest.raises(DataError, match=r"train\.json:2: bytes b'\\xff'"):
        read_json_lines(path, task)
    dart = tmp_path / "dart.json"
    dart.write_bytes(b'[{"tripleset": [["a", "b", "c"]], "annotations": [{"text": "caf\xe9"}]}]')
    with pytest.raises(DataError, match=r"dart\.json:1: bytes b'\\xe9'"):
        parse_dart_json(dart)


def test_max_length_beyond_the_model_positions_fails_before_tokenizing(train, monkeypatch, tmp_path):
    from regbench.data.datamodule import TaskDataModule
    from regbench.models.backbone import BackboneMismatchError

    monkeypatch.setattr(TaskDataModule, "prepare_data", lambda self: pytest.fail("tokenized before the check"))
    with pytest.raises(BackboneMismatchError, match=r"data\.max_length=256 exceeds the model positions .*at most 128"):
        train(tmp_path / "run", "data.max_length=256")
    assert record(tmp_path / "run")["status"] == "failed"


def test_a_tokenizer_larger_than_the_model_vocabulary_fails_before_tokenizing(overrides, tmp_path, monkeypatch):
    from transformers import AutoTokenizer

    from regbench.data.datamodule import TaskDataModule
    from regbench.models.backbone import BackboneMismatchError
    from regbench.train import run
    from tests.fixtures import save_tiny_bert

    small = save_tiny_bert(tmp_path / "small", vocab_size=20)  # weights for 20 ids, a tokenizer of the full word list
    tokens = len(AutoTokenizer.from_pretrained(small))
    assert tokens > 20
    monkeypatch.setattr(TaskDataModule, "prepare_data", lambda self: pytest.fail("tokenized before the check"))
    with pytest.raises(BackboneMismatchError, match=rf"has {tokens} tokens but the model's vocabulary has 20"):
        run(compose_config(overrides(f"backbone.path={small}"), tmp_path / "run"))


# -- item 7: corrupt state --------------------------------------------------------------------------------
@pytest.fixture
def datamodule(tiny_bert, glue_root, tmp_path):
    from transformers import AutoTokenizer

    from regbench.data.datamodule import TaskDataModule
    from regbench.models import encoding_factory

    cfg = compose_config(["task=glue/rte", f"task.data_dir={glue_root / 'rte'}", f"data.cache_dir={tmp_path / 'cache'}",
                          "data.max_length=32"])

    def make():
        return TaskDataModule(cfg.task, cfg.data, AutoTokenizer.from_pretrained(tiny_bert), seed=0,
                              encoding=encoding_factory(cfg))

    return make


def _first_rows(dm):
    dm.setup()
    return {split: dm.datasets[split][:3]["input_ids"] for split in dm.datasets}


@pytest.mark.parametrize("damage", ["truncate", "empty", "manifest", "state"])
def test_a_corrupt_tokenization_cache_is_detected_and_rebuilt(datamodule, damage, caplog):
    dm = datamodule()
    dm.prepare_data()
    expected = _first_rows(dm)
    arrow = next(dm.cache_path.rglob("*.arrow"))
    if damage == "truncate":
        arrow.write_bytes(arrow.read_bytes()[: arrow.stat().st_size // 2])
    elif damage == "empty":
        arrow.write_bytes(b"")
    elif damage == "manifest":
        (dm.cache_path / "regbench_cache.json").unlink()
    else:
        next(dm.cache_path.rglob("state.json")).write_text("{not json")
    fresh = datamodule()
    fresh.prepare_data()
    assert "is unusable" in caplog.text and "rebuilding it" in caplog.text
    assert _first_rows(fresh) == expected


def test_cache_folders_honour_the_umask_so_a_group_can_share_them(datamodule):
    previous = os.umask(0o002)  # a group-writable setup
    try:
        dm = datamodule()
        dm.prepare_data()
    finally:
        os.umask(previous)
    for path in [dm.cache_path, *dm.cache_path.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o060 == 0o060, f"{path} is {oct(mode)}: the group cannot read and write it"


@pytest.mark.parametrize("damage", [b"", b"PK\x03\x04 truncated"])
def test_an_empty_or_truncated_last_ckpt_is_a_clear_error_before_the_model_loads(train, tmp_path, monkeypatch, damage):
    from regbench.checkpointing import CheckpointError

    run_dir = tmp_path / "run"
    train(run_dir, "trainer.max_steps=1")
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(damage)
    monkeypatch.setattr("regbench.models.build_module", lambda *a: pytest.fail("model built before the check"))
    with pytest.raises(CheckpointError, match=r"last\.ckpt is (empty|truncated).*resume=never"):
        train(run_dir, "trainer.max_steps=1")
    assert record(run_dir)["status"] == "failed"


# -- item 8: only local checkpoints, only safe loads ------------------------------------------------------
def test_a_remote_checkpoint_is_refused_before_anything_is_fetched(train, tmp_path, monkeypatch):
    import torch

    from regbench.config import ConfigError

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", lambda *a, **k: pytest.fail("fetched"))
    with pytest.raises(ConfigError, match=r"resume='http://127\.0\.0\.1:9/x\.ckpt' .*remote checkpoints are not loaded"):
        train(tmp_path / "run", "resume=http://127.0.0.1:9/x.ckpt")


def test_a_malicious_local_checkpoint_runs_no_code(train, tmp_path):
    import pickle

    import torch

    from regbench.checkpointing import AtomicCheckpointIO, CheckpointError

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "x": Payload()}, evil, pickle_module=pickle)
    with pytest.raises(CheckpointError, match="cannot be loaded safely"):
        train(tmp_path / "run", f"resume={evil}")
    with pytest.raises(Exception):
        AtomicCheckpointIO().load_checkpoint(evil)  # Lightning's own load path: weights_only forced
    with pytest.raises(CheckpointError, match="only local checkpoint files"):
        AtomicCheckpointIO().load_checkpoint("https://example.com/x.ckpt")
    assert not marker.exists()


def test_no_unsafe_loader_in_the_source():
    """Every file the project loads goes through a safe loader: weights_only torch.load, yaml.safe_load, no pickle."""
    import re

    src = Path(__file__).resolve().parents[2] / "src"
    offenders = []
    for path in src.rglob("*.py"):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            code = line.split("#", 1)[0]
            if re.search(r"\btorch\.load\(", code) and "weights_only=True" not in code:
                offenders.append(f"{path}:{number}: {line.strip()}")
            if re.search(r"\b(pickle|dill|cloudpickle)\.loads?\(|\byaml\.(load|unsafe_load|full_load)\(", code):
                offenders.append(f"{path}:{number}: {line.strip()}")
    assert offenders == []


def test_a_malformed_sweep_file_exits_2_naming_the_line(tmp_path, capsys):
    from regbench.sweep.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text("name: s\naxes:\n  seed: [1, 2\nfixed: {}\n")
    assert main(["run", str(bad), "--dry-run", "--sweep-dir", str(tmp_path / "out")]) == 2
    assert "bad.yaml:4: not a valid sweep file" in capsys.readouterr().err
