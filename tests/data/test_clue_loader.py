"""CLUE local layout (CLUE and FewCLUE JSON lines), the hub label alignment, and clear errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from regbench.data import DataError, load_task
from tests.clue_fixtures import (CLUE_TASKS, NLI_LABELS, TNEWS_CODES, read_json_lines, write_clue_task,
                                 write_json_lines)
from tests.conftest import REPO, compose_config


def task_cfg(task: str, data_dir=None, *extra: str):
    overrides = [f"task=clue/{task}", *extra]
    if data_dir is not None:
        overrides.append(f"task.data_dir={data_dir}")
    return compose_config(overrides).task


def label_names(task: str) -> list[str]:
    return [str(n) for n in task_cfg(task).label_names]


# -- every task ---------------------------------------------------------------------------------
@pytest.mark.parametrize("fewclue", [False, True], ids=["clue-names", "fewclue-names"])
@pytest.mark.parametrize("task", CLUE_TASKS)
def test_every_task_parses_into_text_keys_and_int_labels(task, fewclue, tmp_path):
    root = write_clue_task(tmp_path / task, task, fewclue=fewclue)
    cfg = task_cfg(task, root)
    data = load_task(cfg)
    assert set(data) == {"train", "validation"}
    assert data["train"].num_rows == 48 and data["validation"].num_rows == 16
    assert data["train"].column_names == [*cfg.text_keys, "label"]
    assert data["train"].features["label"].dtype == "int64"
    names = label_names(task)
    labels = data["train"]["label"]
    assert all(0 <= y < len(names) for y in labels) and len(set(labels)) > 1
    assert all(isinstance(data["train"][0][k], str) and data["train"][0][k] for k in cfg.text_keys)
    # the label ids are the positions of the file's labels in task.label_names
    first = read_json_lines(root / ("train_few_all.json" if fewclue else "train.json"))[0]
    assert names[labels[0]] == str(first["label"])


def test_tnews_string_and_int_codes_map_to_the_same_ids(tmp_path):
    names = label_names("tnews")
    assert len(names) == 15 and "105" not in names and "111" not in names
    clue = load_task(task_cfg("tnews", write_clue_task(tmp_path / "clue", "tnews")))
    few = load_task(task_cfg("tnews", write_clue_task(tmp_path / "few", "tnews", fewclue=True)))
    assert isinstance(read_json_lines(tmp_path / "clue" / "train.json")[0]["label"], str)
    assert isinstance(read_json_lines(tmp_path / "few" / "train_few_all.json")[0]["label"], int)
    expected = [names.index(str(TNEWS_CODES[i % 15])) for i in range(48)]
    assert clue["train"]["label"] == few["train"]["label"] == expected
    assert expected[5] == 5 and expected[6] == 5 + 1 and names[5] == "106"  # 105 skipped: 106 is id 5


def test_iflytek_has_119_classes():
    assert label_names("iflytek") == [str(i) for i in range(119)]


def test_nli_rows_labelled_dash_are_dropped(tmp_path):
    for task in ("cmnli", "ocnli"):
        root = write_clue_task(tmp_path / task, task)
        raw = read_json_lines(root / "dev.json")
        assert sum(r["label"] == "-" for r in raw) == 3 and len(raw) == 19
        data = load_task(task_cfg(task, root))
        assert data["validation"].num_rows == 16
        assert data["validation"]["label"][:3] == [0, 1, 2]  # entailment, neutral, contradiction
        kept = [r for r in raw if r["label"] != "-"]
        assert data["validation"]["sentence1"] == [r["sentence1"] for r in kept]


def test_cluewsc_marks_both_spans_by_index(tmp_path):
    text = "就像一片树叶飘入了树林，他走到了我的家人中间。"
    rows = [{"target": {"span2_index": 12, "span1_index": 4, "span1_text": "树叶", "span2_text": "他"},
             "idx": 0, "label": "false", "text": text},
            # span2 before span1, and the second occurrence of a repeated pronoun
            {"target": {"span2_index": 3, "span1_index": 5, "span1_text": "老师", "span2_text": "他"},
             "idx": 1, "label": "true", "text": "他说，他的老师来了"},
            # an index off by one: the nearest occurrence of the span text is used
            {"target": {"span2_index": 6, "span1_index": 0, "span1_text": "小狗", "span2_text": "它"},
             "idx": 2, "label": "true", "text": "小狗跑了，它累了"}]
    root = tmp_path / "wsc"
    write_json_lines(root / "train.json", rows)
    write_json_lines(root / "dev.json", rows[:1])
    data = load_task(task_cfg("cluewsc2020", root))
    assert data["train"]["text"] == ["就像一片[树叶]飘入了树林，<他>走到了我的家人中间。",
                                     "他说，<他>的[老师]来了",
                                     "[小狗]跑了，<它>累了"]
    assert data["train"]["label"] == [0, 1, 1]  # label_names: [false, true]


def test_cluewsc_span_markers_are_configurable(tmp_path):
    root = write_clue_task(tmp_path / "wsc", "cluewsc2020")
    row = read_json_lines(root / "train.json")[0]
    data = load_task(task_cfg("cluewsc2020", root, "task.span_markers.span1=[_,_]",
                              "task.span_markers.span2=['（','）']"))
    t = row["target"]
    assert data["train"][0]["text"] == (row["text"][:t["span1_index"]] + "_" + t["span1_text"] + "_"
                                        + row["text"][t["span1_index"] + len(t["span1_text"]):t["span2_index"]]
                                        + "（" + t["span2_text"] + "）"
                                        + row["text"][t["span2_index"] + len(t["span2_text"]):])


def test_csl_pairs_joined_keywords_with_the_abstract(tmp_path):
    root = write_clue_task(tmp_path / "csl", "csl")
    raw = read_json_lines(root / "train.json")
    data = load_task(task_cfg("csl", root))
    assert data["train"].column_names == ["keywords", "abst", "label"]
    for got, row in zip(data["train"], raw):
        assert got["keywords"] == "，".join(row["keyword"]) and got["abst"] == row["abst"]
        assert got["label"] == int(row["label"])
    assert len(raw[2]["keyword"]) == 3 and data["train"][2]["keywords"].count("，") == 2


def test_fewclue_test_public_can_be_an_eval_split(tmp_path):
    root = write_clue_task(tmp_path / "ocnli", "ocnli", fewclue=True)
    data = load_task(task_cfg("ocnli", root, "task.eval_splits=[validation,test]"))
    assert set(data) == {"train", "validation", "test"} and data["test"].num_rows == 16


def test_clue_names_win_and_task_files_picks_another_file(tmp_path):
    root = write_clue_task(tmp_path / "afqmc", "afqmc", n_train=10)
    write_clue_task(root, "afqmc", n_train=30, fewclue=True)
    assert load_task(task_cfg("afqmc", root))["train"].num_rows == 10
    write_json_lines(root / "train_0.json", read_json_lines(root / "train.json")[:4])
    assert load_task(task_cfg("afqmc", root, "task.files.train=train_0.json"))["train"].num_rows == 4


def test_a_utf8_bom_is_accepted(tmp_path):
    root = write_clue_task(tmp_path / "afqmc", "afqmc")
    path = root / "dev.json"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert load_task(task_cfg("afqmc", root))["validation"].num_rows == 16


# -- bad input ----------------------------------------------------------------------------------
def test_missing_file_names_the_file_folder_and_accepted_names(tmp_path):
    root = write_clue_task(tmp_path / "tnews", "tnews")
    (root / "dev.json").unlink()
    with pytest.raises(DataError) as err:
        load_task(task_cfg("tnews", root))
    message = str(err.value)
    assert "no 'validation' file" in message and str(root) in message
    assert "dev.json or dev_few_all.json" in message and "task.files.validation=" in message


def test_missing_data_dir_is_named(tmp_path):
    with pytest.raises(DataError, match=r"task.data_dir=.*nowhere.* is not a directory"):
        load_task(task_cfg("afqmc", tmp_path / "nowhere"))


def test_malformed_json_line_names_file_and_line(tmp_path):
    root = write_clue_task(tmp_path / "afqmc", "afqmc")
    lines = (root / "train.json").read_text(encoding="utf-8").splitlines()
    lines[6] = lines[6][:-5]
    (root / "train.json").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"train.json:7: malformed JSON line"):
        load_task(task_cfg("afqmc", root))


def test_missing_field_names_file_line_and_field(tmp_path):
    root = write_clue_task(tmp_path / "ocnli", "ocnli")
    rows = read_json_lines(root / "dev.json")
    del rows[2]["sentence2"]
    write_json_lines(root / "dev.json", rows)
    with pytest.raises(DataError, match=r"dev.json:3: missing field 'sentence2'"):
        load_task(task_cfg("ocnli", root))


def test_missing_label_and_wsc_target_are_named(tmp_path):
    root = write_clue_task(tmp_path / "wsc", "cluewsc2020")
    rows = read_json_lines(root / "train.json")
    del rows[4]["target"]
    write_json_lines(root / "train.json", rows)
    with pytest.raises(DataError, match=r"train.json:5: missing field 'target'"):
        load_task(task_cfg("cluewsc2020", root))
    rows = read_json_lines(root / "dev.json")
    del rows[0]["label"]
    write_json_lines(root / "train.json", rows)
    with pytest.raises(DataError, match=r"train.json:1: missing field 'label'"):
        load_task(task_cfg("cluewsc2020", root))


def test_wsc_span_absent_from_the_text_is_named(tmp_path):
    root = write_clue_task(tmp_path / "wsc", "cluewsc2020")
    rows = read_json_lines(root / "dev.json")
    rows[1]["target"]["span1_text"] = "不存在的词"
    write_json_lines(root / "dev.json", rows)
    with pytest.raises(DataError, match=r"dev.json:2: target.span1_text='不存在的词' does not occur"):
        load_task(task_cfg("cluewsc2020", root))


def test_unknown_label_names_file_line_and_valid_labels(tmp_path):
    root = write_clue_task(tmp_path / "tnews", "tnews", fewclue=True)
    rows = read_json_lines(root / "dev_few_all.json")
    rows[3]["label"] = 105
    write_json_lines(root / "dev_few_all.json", rows)
    with pytest.raises(DataError, match=r"dev_few_all.json:4: label 105 is not one of \['100', '101', .*'116'\]"):
        load_task(task_cfg("tnews", root))


def test_empty_split_says_so(tmp_path):
    root = write_clue_task(tmp_path / "cmnli", "cmnli")
    (root / "dev.json").write_text("\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"dev.json: no usable rows \(empty split\)"):
        load_task(task_cfg("cmnli", root))
    write_json_lines(root / "dev.json", [{"sentence1": "我", "sentence2": "你", "label": "-"}])  # only unlabelled
    with pytest.raises(DataError, match=r"empty split"):
        load_task(task_cfg("cmnli", root))


# -- hub ----------------------------------------------------------------------------------------
def _fake_hub(monkeypatch, splits: dict[str, dict], features):
    import datasets

    calls = []

    def load_dataset(path, name=None, **kwargs):
        calls.append((path, name))
        return datasets.DatasetDict({s: datasets.Dataset.from_dict(cols, features=features)
                                     for s, cols in splits.items()})

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return calls


def test_hub_nli_labels_are_realigned_by_name(monkeypatch):
    import datasets

    # clue/clue orders NLI labels neutral, entailment, contradiction; -1 marks unlabelled rows
    features = datasets.Features({"sentence1": datasets.Value("string"), "sentence2": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["neutral", "entailment", "contradiction"]),
                                  "idx": datasets.Value("int32")})
    cols = {"sentence1": ["甲", "乙", "丙", "丁"], "sentence2": ["子", "丑", "寅", "卯"], "label": [0, 1, 2, -1],
            "idx": [0, 1, 2, 3]}
    calls = _fake_hub(monkeypatch, {"train": cols, "validation": cols, "test": cols}, features)
    data = load_task(task_cfg("ocnli"))
    assert calls == [("clue/clue", "ocnli")]
    assert data["train"].column_names == ["sentence1", "sentence2", "label"]
    expected = [NLI_LABELS.index(n) for n in ("neutral", "entailment", "contradiction")]
    assert data["train"]["label"] == data["validation"]["label"] == expected == [1, 0, 2]
    assert data["train"]["sentence1"] == ["甲", "乙", "丙"]


def test_hub_cluewsc_and_csl_build_the_same_inputs_as_local_files(monkeypatch):
    import datasets

    wsc_features = datasets.Features({
        "idx": datasets.Value("int32"), "text": datasets.Value("string"),
        "label": datasets.ClassLabel(names=["true", "false"]),
        "target": {"span1_text": datasets.Value("string"), "span2_text": datasets.Value("string"),
                   "span1_index": datasets.Value("int32"), "span2_index": datasets.Value("int32")}})
    target = {"span1_text": "树叶", "span2_text": "他", "span1_index": 4, "span2_index": 12}
    cols = {"idx": [0, 1], "text": ["就像一片树叶飘入了树林，他走到了我的家人中间。"] * 2, "label": [0, 1],
            "target": [target, target]}
    _fake_hub(monkeypatch, {"train": cols, "validation": cols}, wsc_features)
    data = load_task(task_cfg("cluewsc2020"))
    assert data["train"]["text"][0] == "就像一片[树叶]飘入了树林，<他>走到了我的家人中间。"
    assert data["train"]["label"] == [1, 0]  # hub true=0/false=1 -> label_names [false, true]

    csl_features = datasets.Features({
        "idx": datasets.Value("int32"), "corpus_id": datasets.Value("int32"), "abst": datasets.Value("string"),
        "label": datasets.ClassLabel(names=["0", "1"]), "keyword": datasets.Sequence(datasets.Value("string"))})
    cols = {"idx": [0, 1], "corpus_id": [5, 6], "abst": ["摘要一", "摘要二"], "label": [1, 0],
            "keyword": [["网络", "隐私"], ["查询"]]}
    _fake_hub(monkeypatch, {"train": cols, "validation": cols}, csl_features)
    data = load_task(task_cfg("csl"))
    assert data["train"][:] == {"keywords": ["网络，隐私", "查询"], "abst": ["摘要一", "摘要二"], "label": [1, 0]}


def test_hub_label_name_outside_label_names_is_an_error(monkeypatch):
    import datasets

    features = datasets.Features({"sentence": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["100", "105"])})
    _fake_hub(monkeypatch, {"train": {"sentence": ["新闻"], "label": [1]},
                            "validation": {"sentence": ["新闻"], "label": [0]}}, features)
    with pytest.raises(DataError, match=r"hub label name\(s\) \['105'\] are not in task.label_names"):
        load_task(task_cfg("tnews"))


def test_offline_hub_miss_says_how_to_use_local_files(monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'clue/clue' on the Hub (offline mode is enabled)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError, match=r"train.json, dev.json.*task=clue/cluewsc2020 task.data_dir="):
        load_task(task_cfg("cluewsc2020"))


def test_chinese_backbones_are_bert_encoders():
    for name, path in (("bert-base-chinese", "google-bert/bert-base-chinese"),
                       ("chinese-roberta-wwm-ext", "hfl/chinese-roberta-wwm-ext")):
        backbone = compose_config([f"backbone={name}"]).backbone
        assert (backbone.name, backbone.path, backbone.family, backbone.kind) == (name, path, "bert", "encoder")


# -- real data (opt-in) -------------------------------------------------------------------------
DATA_ROOT = Path(os.environ.get("REGBENCH_DATA", REPO.parent / "shared" / "data")) / "clue"
FEWCLUE = {"tnews": "tnews", "iflytek": "iflytek", "ocnli": "ocnli", "cluewsc2020": "cluewsc", "csl": "csl"}


@pytest.mark.slow
@pytest.mark.skipif(not DATA_ROOT.is_dir(), reason=f"no CLUE copy at {DATA_ROOT} (set REGBENCH_DATA)")
@pytest.mark.parametrize("task", ["afqmc", *FEWCLUE])
def test_real_clue_and_fewclue_files_parse(task):
    root = DATA_ROOT / "afqmc" if task == "afqmc" else DATA_ROOT / "fewclue" / FEWCLUE[task]
    if not root.is_dir():
        pytest.skip(f"no {root}")
    extra = [] if task == "afqmc" else ["task.eval_splits=[validation,test]"]
    cfg = task_cfg(task, root, *extra)
    data = load_task(cfg)
    names = label_names(task)
    for split, ds in data.items():
        labels = ds["label"]
        assert ds.num_rows >= 100, (split, ds.num_rows)
        assert 0 <= min(labels) and max(labels) < len(names)
        assert len(set(labels)) >= 2
        assert all(ds[0][k] for k in cfg.text_keys)
    if task == "afqmc":
        assert (data["train"].num_rows, data["validation"].num_rows) == (34334, 4316)
    else:  # FewCLUE train_few_all: few-shot, at most a few thousand rows
        assert data["train"].num_rows <= 5000
    if task in ("tnews", "iflytek", "cluewsc2020", "csl"):  # FewCLUE train_few_all covers every class
        assert len(set(data["train"]["label"])) == len(names)
    if task == "cluewsc2020":
        assert all(t.count("[") >= 1 and t.count("<") >= 1 for t in data["train"]["text"])
