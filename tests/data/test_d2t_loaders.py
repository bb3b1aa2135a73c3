"""Data-to-text loaders: official layouts of E2E, WebNLG, DART, Rotowire, hub rows, and clear errors."""

from __future__ import annotations

import json

import pytest

from regbench.data import DataError, load_task
from regbench.data.d2t import dart_hub_examples, e2e_hub_examples, parse_webnlg_xml, webnlg_hub_examples
from regbench.data.rotowire import linearize_game
from tests.conftest import compose_config
from tests.d2t_fixtures import e2e_mrs, e2e_references, rotowire_game, webnlg_entry, write_dart, write_e2e, write_webnlg_xml


def task_cfg(task: str, data_dir, *extra: str):
    return compose_config([f"task=d2t/{task}", f"task.data_dir={data_dir}", *extra]).task


def test_e2e_train_is_pairs_and_eval_groups_references_by_mr(tmp_path):
    data = load_task(task_cfg("e2e", write_e2e(tmp_path / "e2e", n_train=24, n_dev=6, n_test=6)))
    assert set(data) == {"train", "validation", "test"}
    refs_per_mr = [1 + i % 3 for i in range(24)]
    assert data["train"].num_rows == sum(refs_per_mr) and data["train"].column_names == ["source", "target"]
    test = data["test"]
    assert test.num_rows == len(set(e2e_mrs(6, seed=2))) == 6
    mrs = e2e_mrs(6, seed=2)
    assert test["source"] == mrs
    assert test["references"] == [e2e_references(mr, 1 + i % 3) for i, mr in enumerate(mrs)]
    assert test["target"] == [refs[0] for refs in test["references"]]


def test_e2e_rows_of_one_mr_are_grouped_even_when_not_adjacent(tmp_path):
    root = tmp_path / "e2e"
    root.mkdir()
    rows = 'mr,ref\n"name[A], food[B]",one\n"name[C], food[D]",two\n"name[A], food[B]","three, with comma"\n'
    for name in ("trainset.csv", "devset.csv", "testset_w_refs.csv"):
        (root / name).write_text(rows)
    test = load_task(task_cfg("e2e", root))["test"]
    assert test["source"] == ["name[A], food[B]", "name[C], food[D]"]
    assert test["references"] == [["one", "three, with comma"], ["two"]]


def test_e2e_missing_reference_column_and_empty_cells_name_the_file(tmp_path):
    root = write_e2e(tmp_path / "e2e")
    (root / "testset_w_refs.csv").write_text('MR\n"name[A]"\n')
    with pytest.raises(DataError, match=r"testset_w_refs\.csv: missing column\(s\) \['mr', 'ref'\]"):
        load_task(task_cfg("e2e", root))
    (root / "testset_w_refs.csv").write_text('mr,ref\n"name[A]",fine\n"name[B]",\n')
    with pytest.raises(DataError, match=r"testset_w_refs\.csv:3: empty ref"):
        load_task(task_cfg("e2e", root))
    (root / "testset_w_refs.csv").write_text("mr,ref\n")
    with pytest.raises(DataError, match=r"testset_w_refs\.csv: no examples \(empty split\)"):
        load_task(task_cfg("e2e", root))


def test_missing_split_files_are_all_named(tmp_path):
    root = write_e2e(tmp_path / "e2e")
    (root / "devset.csv").unlink()
    (root / "testset_w_refs.csv").unlink()
    with pytest.raises(DataError, match=r"missing data file\(s\).*devset\.csv.*testset_w_refs\.csv.*task\.files"):
        load_task(task_cfg("e2e", root))


def _webnlg_tree(root):
    entries = {
        "1triples/Food.xml": [webnlg_entry(1, ["Ajoblanco | country | Spain"], ["Ajoblanco is from Spain.",
                                                                                 "Ajoblanco  comes\n from Spain."])],
        "2triples/Food.xml": [webnlg_entry(2, ["Bacon_Explosion | country | United_States",
                                               "Bacon_Explosion | mainIngredient | Bacon"],
                                           ["Bacon Explosion is American and made of bacon."], lex_in_text_tag=False)],
    }
    for split in ("train", "dev", "test"):
        for rel, items in entries.items():
            write_webnlg_xml(root / split / rel, items)
    return root


def test_webnlg_xml_tree_linearizes_triples_and_reads_both_lex_layouts(tmp_path):
    data = load_task(task_cfg("webnlg", _webnlg_tree(tmp_path / "webnlg")))
    test = data["test"]
    assert test["source"] == ["Ajoblanco | country | Spain",
                              "Bacon Explosion | country | United States ; Bacon Explosion | mainIngredient | Bacon"]
    assert test["references"] == [["Ajoblanco is from Spain.", "Ajoblanco comes from Spain."],  # whitespace normalised
                                  ["Bacon Explosion is American and made of bacon."]]
    assert data["train"].num_rows == 3


def test_webnlg_malformed_xml_and_entries_without_text_name_file_and_entry(tmp_path):
    bad = tmp_path / "bad.xml"
    bad.write_text('<?xml version="1.0" ?>\n<benchmark><entries>\n<entry eid="Id1"></benchmark>\n')
    with pytest.raises(DataError, match=r"bad\.xml:3: malformed XML"):
        parse_webnlg_xml(bad)
    write_webnlg_xml(bad, [webnlg_entry(7, ["A | b | C"], [])])
    with pytest.raises(DataError, match=r"bad\.xml: entry eid='Id7' has no <lex> text"):
        parse_webnlg_xml(bad)


def _dart_rows():
    return [
        {"tripleset": [["Mars Hill College", "JOINED", "1973"], ["Mars Hill College", "LOCATION", "Mars Hill, NC"]],
         "subtree_was_extended": False,
         "annotations": [{"source": "WikiSQL_decl_sents", "text": "Mars Hill College joined in 1973."},
                         {"source": "WikiSQL_decl_sents", "text": "In 1973, Mars Hill College joined."}]},
        {"tripleset": [["[TABLECONTEXT]", "[TITLE]", "Films"]], "annotations": [{"source": "e2e", "text": "Films."}]},
    ]


def test_dart_json_groups_annotations_per_tripleset(tmp_path):
    root = tmp_path / "dart"
    cfg = task_cfg("dart", root)
    for name in cfg.files.values():
        write_dart(root / name, _dart_rows())
    test = load_task(cfg)["test"]
    assert test["source"] == ["Mars Hill College | JOINED | 1973 ; Mars Hill College | LOCATION | Mars Hill, NC",
                              "[TABLECONTEXT] | [TITLE] | Films"]
    assert test["references"][0] == ["Mars Hill College joined in 1973.", "In 1973, Mars Hill College joined."]


def test_dart_malformed_rows_and_json_name_file_and_position(tmp_path):
    root = tmp_path / "dart"
    cfg = task_cfg("dart", root)
    for name in cfg.files.values():
        write_dart(root / name, _dart_rows())
    write_dart(root / cfg.files.test, [_dart_rows()[0], {"tripleset": [["only", "two"]], "annotations": []}])
    with pytest.raises(DataError, match=r"full-test\.json: entry 1: malformed row"):
        load_task(cfg)
    (root / cfg.files.test).write_text('[\n{"tripleset": [["a", "b", "c"]],\n "annotations": [}\n]')
    with pytest.raises(DataError, match=r"full-test\.json:3: malformed JSON"):
        load_task(cfg)


def test_rotowire_linearizes_teams_and_players_who_played_by_points():
    text = linearize_game(rotowire_game())
    assert text.startswith("<home> Toronto Raptors | 8-3 | PTS 96 (Q1 25) | AST 22  <vis> Miami Heat | 5-6 | PTS 76")
    players = text.split("  ")[2:]
    assert [p.split(" | ")[0] for p in players] == ["<player> DeMar DeRozan", "<player> Kyle Lowry",
                                                    "<player> Goran Dragic"]  # DNP left out; home first, by points
    assert players[0] == "<player> DeMar DeRozan | home | MIN 34 | PTS 31 | REB 5 | AST 7 | FG 9-17"


def test_rotowire_json_files_and_a_malformed_game(tmp_path):
    root = tmp_path / "rotowire"
    cfg = task_cfg("rotowire", root)
    root.mkdir()
    for name in cfg.files.values():
        (root / name).write_text(json.dumps([rotowire_game(), rotowire_game("Bulls", "Knicks")]))
    data = load_task(cfg)
    assert data["validation"]["references"][1] == ["The Bulls defeated the Knicks 96 - 76 on Saturday ."]
    game = rotowire_game()
    del game["box_score"]
    (root / cfg.files.test).write_text(json.dumps([rotowire_game(), game]))
    with pytest.raises(DataError, match=r"test\.json: game 1: malformed row \(KeyError"):
        load_task(cfg)


def test_hub_rows_become_the_same_examples():
    e2e = {"meaning_representation": ["name[A]", "name[B]", "name[A]"], "human_reference": ["a1", "b1", "a2"]}
    assert e2e_hub_examples(e2e) == [("name[A]", ["a1", "a2"]), ("name[B]", ["b1"])]
    webnlg = {"modified_triple_sets": [{"mtriple_set": [["Ajoblanco | country | Spain"]]}],
              "lex": [{"comment": ["good"], "lid": ["Id1"], "text": ["Ajoblanco is from Spain."], "lang": [""]}]}
    assert webnlg_hub_examples(webnlg) == [("Ajoblanco | country | Spain", ["Ajoblanco is from Spain."])]
    dart = {"tripleset": [[["A", "p", "B"]], [["A", "p", "B"]]],
            "annotations": [{"source": ["x"], "text": ["t1"]}, {"source": ["y"], "text": ["t2"]}]}
    assert dart_hub_examples(dart) == [("A | p | B", ["t1", "t2"])]


def test_offline_hub_miss_and_rotowire_without_hub_say_how_to_use_local_files():
    with pytest.raises(DataError, match=r"task\.data_dir"):
        load_task(compose_config(["task=d2t/e2e"]).task)
    with pytest.raises(DataError, match=r"no hub copy.*task\.data_dir.*train\.json, valid\.json, test\.json"):
        load_task(compose_config(["task=d2t/rotowire"]).task)
