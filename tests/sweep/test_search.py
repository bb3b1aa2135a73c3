"""Hyperparameter search per group of cells (regbench.sweep.search): Optuna TPE over declared
ranges, trials as ordinary run dirs, seeds at the best point, resumable after a crash.

The fake app's metric is 0.6 + regularizer.tlm.p / 10 + seed / 100 (tests/sweep/conftest.py), so
the best trial is the one with the highest rate and a cell's metric tells the rate it ran at.
"""

from __future__ import annotations

import json

import pytest
import yaml

from regbench.sweep import search as search_mod
from regbench.sweep.cli import main as cli_main
from regbench.sweep.spec import SweepSpecError, load_sweep, parse_sweep

SWEEP = {
    "name": "toy",
    "axes": {"regularizer": ["none", {"label": "tlm", "overrides": {"regularizer": "tlm"}}],
             "task": ["glue/rte"], "seed": [1, 2]},
    "scales": {"full": {}, "mini": {}},
    "search": {"per_value": {"regularizer": {"tlm": {"regularizer.tlm.p": {"low": 0.0, "high": 1.0}}}},
               "n_trials": {"full": 2, "mini": 1}, "sampler_seed": 7},
    "report": {"rows": ["regularizer"], "column": "task", "metric": "validation/accuracy"},
}


def _write(tmp_path, spec=SWEEP):
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _trials(sweep_dir):
    return sorted((sweep_dir / "search").glob("*/trial*/metrics.json"))


def _run(fake_app, sweep_file, sweep_dir, *extra):
    return cli_main(["run", str(sweep_file), "--project-dir", str(fake_app), "--sweep-dir", str(sweep_dir),
                     "hydra/job_logging=disabled", *extra])


def test_search_runs_trials_as_run_dirs_then_the_seeds_at_the_best_point(fake_app, tmp_path, capsys):
    sweep_file, sweep_dir = _write(tmp_path), tmp_path / "runs"
    assert _run(fake_app, sweep_file, sweep_dir) == 0
    trials = _trials(sweep_dir)
    assert len(trials) == 2  # the tlm group only: `none` has no range, it runs as declared
    rates = [json.loads(p.read_text())["best"]["validation/accuracy"] for p in trials]
    assert all(json.loads(p.read_text())["status"] == "ok" for p in trials)
    best_acc = max(rates)  # trials run with the group's first cell: seed 1
    best_rate = round((best_acc - 0.6 - 0.01) * 10, 9)
    for seed in (1, 2):
        cell = json.loads((sweep_dir / f"tlm__glue-rte__seed{seed}" / "metrics.json").read_text())
        assert cell["best"]["validation/accuracy"] == pytest.approx(0.6 + best_rate / 10 + seed / 100)
        fingerprint = json.loads((sweep_dir / f"tlm__glue-rte__seed{seed}" / "sweep_fingerprint.json").read_text())
        assert fingerprint["overrides"]["regularizer.tlm.p"] == pytest.approx(best_rate)
    assert json.loads((sweep_dir / "none__glue-rte__seed1" / "metrics.json").read_text())["status"] == "ok"
    assert (sweep_dir / "search" / "search.db").is_file()

    # a second run finds everything done: no trial, no cell launched; status shows the search and the cells
    capsys.readouterr()
    assert _run(fake_app, sweep_file, sweep_dir) == 0
    assert "0 to launch" in capsys.readouterr().out and len(_trials(sweep_dir)) == 2
    assert cli_main(["status", str(sweep_file), "--project-dir", str(fake_app), "--sweep-dir", str(sweep_dir)]) == 0
    out = capsys.readouterr().out
    assert "search tlm__glue-rte: 2/2 trials finished" in out and "4 ok" in out and "0 stale" in out



def test_a_search_resumes_after_a_crash_rerunning_the_interrupted_trial_in_its_dir(fake_app, tmp_path, monkeypatch):
    import optuna

    real_launch = search_mod._launch_trials
    calls = []

    def crash_on_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt("driver killed")  # the trial stays RUNNING in the study
        return real_launch(*args, **kwargs)

    monkeypatch.setattr(search_mod, "_launch_trials", crash_on_second)
    sweep_file, sweep_dir, only = _write(tmp_path), tmp_path / "runs", ("--only", "regularizer=tlm", "--only", "seed=1")
    with pytest.raises(KeyboardInterrupt):
        _run(fake_app, sweep_file, sweep_dir, *only)
    monkeypatch.setattr(search_mod, "_launch_trials", real_launch)
    storage = optuna.storages.RDBStorage(f"sqlite:///{sweep_dir / 'search' / 'search.db'}")
    (summary,) = optuna.study.get_all_study_summaries(storage)
    interrupted = optuna.load_study(study_name=summary.study_name, storage=storage).trials
    assert [t.state.name for t in interrupted] == ["COMPLETE", "RUNNING"]

    assert _run(fake_app, sweep_file, sweep_dir, *only) == 0
    trials = optuna.load_study(study_name=summary.study_name, storage=storage).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    assert trials[1].params == interrupted[1].params  # the same trial, run again at its values
    assert [p.parent.name for p in _trials(sweep_dir)] == ["trial0", "trial1"]


def test_suggestions_depend_only_on_the_seed_trial_number_and_history():
    import optuna

    spec = parse_sweep(SWEEP).search
    (group,) = search_mod.search_groups(parse_sweep(SWEEP), "full", parse_sweep(SWEEP).cells("full")[2:3])

    def second_trial(sampler_seed):
        study = optuna.create_study(direction="maximize")
        spec.sampler_seed = sampler_seed
        first = search_mod._next_batch(study, group, search_mod._state(study, group, 5), spec)
        study.tell(0, 0.5)
        return first, search_mod._next_batch(study, group, search_mod._state(study, group, 5), spec)

    assert second_trial(7) == second_trial(7) != second_trial(8)


def test_dry_run_reads_the_search_state_and_launches_nothing(fake_app, tmp_path, capsys, launched):
    assert cli_main(["run", str(_write(tmp_path)), "--dry-run", "--project-dir", str(fake_app),
                     "--sweep-dir", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert "search tlm__glue-rte: 0/2 trials finished" in out
    assert "SearchPending" in out and launched() == [] and not (tmp_path / "runs" / "search").exists()


@pytest.mark.parametrize("search, error", [
    ({"params": {"optim.lr": {"low": 1e-3, "high": 1e-5}}, "n_trials": 2}, "must be below high"),
    ({"params": {"optim.lr": {"low": 0, "high": 1, "log": True}}, "n_trials": 2}, "log range needs low > 0"),
    ({"params": {"optim.lr": {"low": 1e-5, "high": 1e-3, "sigma": 1}}, "n_trials": 2}, "unknown key"),
    ({"params": {"optim.lr": {"low": 1e-5, "high": 1e-3}}, "n_trials": 0}, "n_trials must be"),
    ({"params": {"optim.lr": {"choices": []}}, "n_trials": 2}, "choices must be a non-empty list"),
    ({"per_value": {"regularizer": {"mixout": {"regularizer.p": {"low": 0.1, "high": 0.9}}}}, "n_trials": 2}, "not a label"),
    ({"n_trials": 2}, "nothing to search"),
    ({"params": {"optim.lr": {"low": 1e-5, "high": 1e-3}}, "n_trials": 2, "per": ["model"]}, "per must be"),
])
def test_bad_search_blocks_fail_at_load_naming_the_key(search, error):
    with pytest.raises(SweepSpecError, match=error):
        parse_sweep({**SWEEP, "search": search})


def test_ranges_suggest_ints_floats_logs_and_choices():
    import optuna

    spec = parse_sweep({**SWEEP, "search": {"params": {
        "optim.lr": {"low": 1e-5, "high": 1e-3, "log": True}, "trainer.max_epochs": {"low": 1, "high": 4},
        "data.batch_size": {"choices": [16, 32]}, "regularizer.tlm.p": {"low": 0.1, "high": 0.5, "step": 0.1}},
        "n_trials": 2}}).search
    trial = optuna.create_study().ask()
    values = {key: r.suggest(trial) for key, r in spec.params.items()}
    assert 1e-5 <= values["optim.lr"] <= 1e-3 and isinstance(values["trainer.max_epochs"], int)
    assert values["data.batch_size"] in (16, 32) and values["regularizer.tlm.p"] == pytest.approx(round(values["regularizer.tlm.p"], 1))


def test_shipped_sweeps_still_load():
    from tests.conftest import REPO

    for path in sorted((REPO / "sweeps").glob("*.yaml")):
        load_sweep(path)
