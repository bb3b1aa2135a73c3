"""Issue 15: training batches grouped by length, evaluation sorted by length, shares under DDP,
mid-epoch resume in the same order, scores identical to an unsorted evaluation, token counts."""

from __future__ import annotations

import json
import random

import pytest

from regbench.data.datamodule import TaskDataModule, TrainOrder
from tests.conftest import compose_config


def _lengths(n: int = 200, seed: int = 0) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(3, 120) for _ in range(n)]


def _padded(order: list[int], lengths: list[int], batch: int) -> int:
    return sum(len(b) * max(lengths[i] for i in b) for b in (order[k:k + batch] for k in range(0, len(order), batch)))


@pytest.mark.parametrize("grouped", [True, False])
def test_the_order_is_a_function_of_seed_and_epoch(grouped):
    lengths = _lengths()
    order = TrainOrder(lengths, 8, seed=5, group_by_length=grouped)
    first = order.indices(0)
    assert sorted(first) == list(range(len(lengths)))  # every row once
    assert TrainOrder(lengths, 8, seed=5, group_by_length=grouped).indices(0) == first
    assert order.indices(1) != first and TrainOrder(lengths, 8, seed=6, group_by_length=grouped).indices(0) != first


def test_the_ungrouped_order_is_the_one_regbench_always_drew():
    import torch

    order = TrainOrder(_lengths(), 8, seed=5, group_by_length=False)
    expected = torch.randperm(200, generator=torch.Generator().manual_seed(5 * 100_003 + 3)).tolist()
    assert order.indices(3) == expected


def test_grouped_batches_carry_far_less_padding():
    lengths = _lengths(2000)
    real = sum(lengths)
    grouped = _padded(TrainOrder(lengths, 32, 1, True).indices(0), lengths, 32) / real
    plain = _padded(TrainOrder(lengths, 32, 1, False).indices(0), lengths, 32) / real
    assert grouped < 1.10 < 1.5 < plain


def test_small_sets_are_grouped_as_tightly_in_a_shuffled_batch_order():
    import torch
    from transformers.trainer_pt_utils import get_length_grouped_indices

    lengths = _lengths(300)  # less than one mega-batch: transformers would cut it into 4 of 4 batches
    order = TrainOrder(lengths, 16, 1, True).indices(0)
    library = get_length_grouped_indices(lengths, 16, generator=torch.Generator().manual_seed(1))
    assert _padded(order, lengths, 16) / sum(lengths) < 1.05 < 1.10 < _padded(library, lengths, 16) / sum(lengths)
    batches = [order[k:k + 16] for k in range(0, 300, 16)]
    assert max(lengths[i] for i in batches[0]) == max(lengths) and len(batches[-1]) == 300 % 16
    longest = [max(lengths[i] for i in batch) for batch in batches[1:-1]]
    assert longest != sorted(longest, reverse=True)  # not one long-to-short sweep
    assert sorted(order) == list(range(300))


@pytest.mark.parametrize("grouped", [True, False])
def test_ddp_ranks_take_disjoint_shares_of_one_epoch(grouped):
    lengths = _lengths(64)
    shares = [TrainOrder(lengths, 8, seed=2, group_by_length=grouped, num_replicas=2, rank=r) for r in (0, 1)]
    for share in shares:
        share.set_epoch(1)
    rows = [list(share) for share in shares]
    assert len(rows[0]) == len(rows[1]) == len(shares[0]) == 32
    assert not set(rows[0]) & set(rows[1]) and set(rows[0]) | set(rows[1]) == set(range(64))


def test_a_resumed_epoch_skips_exactly_the_batches_already_trained():
    lengths = _lengths(50)
    done = {"batches": 3}
    order = TrainOrder(lengths, 8, seed=1, group_by_length=True, progress=lambda: done["batches"])
    order.set_epoch(2)
    state = order.state_dict()
    assert state["epoch"] == 2 and state["batches_done"] == 3
    resumed = TrainOrder(lengths, 8, seed=1, group_by_length=True)
    resumed.load_state_dict(state)
    resumed.set_epoch(2)
    assert list(resumed) == order.indices(2)[24:]
    resumed.set_epoch(3)
    assert list(resumed) == order.indices(3)  # only the interrupted epoch is shortened
    with pytest.raises(RuntimeError, match=r"group_by_length.*\(True, False\)"):
        TrainOrder(lengths, 8, seed=1, group_by_length=False).load_state_dict(state)


@pytest.fixture
def datamodule(tiny_bert, glue_root, tmp_path):
    from transformers import AutoTokenizer

    from regbench.models import encoding_factory

    def make(*extra: str) -> TaskDataModule:
        cfg = compose_config(["task=glue/stsb", f"task.data_dir={glue_root / 'stsb'}", f"backbone.path={tiny_bert}",
                              "data.batch_size=4", "data.eval_batch_size=4", f"data.cache_dir={tmp_path}", *extra])
        module = TaskDataModule(cfg.task, cfg.data, AutoTokenizer.from_pretrained(tiny_bert), seed=3,
                                encoding=encoding_factory(cfg))
        module.setup()
        return module

    return make


def test_evaluation_batches_are_sorted_longest_first_and_cover_every_row_once(datamodule):
    dm = datamodule()
    batches = list(dm.eval_dataloader("validation"))
    ids = [int(i) for b in batches for i in b["example_id"]]
    assert sorted(ids) == list(range(16))
    real = [int(b["attention_mask"].sum(1).max()) for b in batches]
    assert real == sorted(real, reverse=True)
    for b in batches:  # no row padded by more than 10%
        assert int(b["attention_mask"].sum(1).min()) * 1.10 >= b["input_ids"].shape[1]
    assert max(len(b["example_id"]) for b in batches) <= 4
    unsorted = datamodule("data.sort_eval_by_length=false")
    assert [int(i) for b in unsorted.eval_dataloader("validation") for i in b["example_id"]] == list(range(16))


def test_the_loaders_shard_themselves_across_ddp_ranks(datamodule):
    class FakeTrainer:  # what the datamodule reads from Lightning's trainer
        world_size = 2

        def __init__(self, rank):
            self.global_rank = rank

    seen: dict[str, list] = {"train": [], "eval": []}
    for rank in (0, 1):
        dm = datamodule()
        dm.trainer = FakeTrainer(rank)
        train_rows = [tuple(r[:n]) for b in dm.train_dataloader()  # padding stripped
                      for r, n in zip(b["input_ids"].tolist(), b["attention_mask"].sum(1).tolist())]
        seen["train"].append(train_rows)
        seen["eval"].append([int(i) for b in dm.eval_dataloader("validation") for i in b["example_id"]])
    assert len(seen["train"][0]) == len(seen["train"][1]) == 24
    assert sorted(seen["train"][0] + seen["train"][1]) == sorted(
        tuple(r) for r in datamodule().datasets["train"]["input_ids"])  # disjoint shares: all 48 rows once
    assert sorted(seen["eval"][0] + seen["eval"][1]) == list(range(16))


def test_trainer_use_distributed_sampler_is_refused_naming_the_key():
    from regbench.config import ConfigError, validate

    cfg = compose_config(["+trainer.use_distributed_sampler=true"])
    with pytest.raises(ConfigError, match=r"trainer\.use_distributed_sampler=True cannot be set"):
        validate(cfg)


# -- end to end -----------------------------------------------------------------------------------
def _metrics(path):
    record = json.loads((path / "metrics.json").read_text())
    assert record["status"] == "ok", record.get("error")
    return record


def test_sorted_evaluation_scores_exactly_as_unsorted(glue_root, tiny_run_overrides, tmp_path):
    from regbench.train import run

    records = {}
    for flag in ("true", "false"):
        out = tmp_path / flag
        run(compose_config(tiny_run_overrides("glue/mrpc", glue_root / "mrpc", "trainer.max_epochs=1", "seed=4",
                                              "checkpoint.enabled=false", "data.eval_batch_size=3",
                                              f"data.sort_eval_by_length={flag}"), out))
        records[flag] = _metrics(out)
    sorted_, plain = records["true"], records["false"]
    assert sorted_["final"] == plain["final"]  # same training, same scores (accuracy, F1) to the bit
    assert sorted_["tokens"]["eval"]["real"] == plain["tokens"]["eval"]["real"]
    assert sorted_["tokens"]["eval"]["padded"] < plain["tokens"]["eval"]["padded"]


def test_metrics_json_token_counts_equal_a_hand_count(glue_root, tiny_bert, tiny_run_overrides, tmp_path):
    """One training batch per epoch (the whole set) and unsorted eval batches of 5: counted by hand."""
    from transformers import AutoTokenizer

    from regbench.data import load_task
    from regbench.train import run

    overrides = tiny_run_overrides("glue/rte", glue_root / "rte", "trainer.max_epochs=2", "checkpoint.enabled=false",
                                   "data.batch_size=48", "data.eval_batch_size=5", "data.sort_eval_by_length=false")
    cfg = compose_config(overrides, tmp_path / "run")
    run(cfg)
    record = _metrics(tmp_path / "run")

    tok = AutoTokenizer.from_pretrained(tiny_bert)
    raw = load_task(cfg.task)

    def lengths(split):
        first, second = (raw[split][key] for key in cfg.task.text_keys)
        return [len(tok(a, b, truncation=True, max_length=32)["input_ids"]) for a, b in zip(first, second)]

    train, dev = lengths("train"), lengths("validation")
    assert len(train) == 48 and len(dev) == 16
    evals = len(record["history"])  # one validation per epoch
    expected = {
        "train": {"real": 2 * sum(train), "padded": 2 * 48 * max(train)},
        "eval": {"real": evals * sum(dev),
                 "padded": evals * sum(len(dev[k:k + 5]) * max(dev[k:k + 5]) for k in range(0, 16, 5))},
    }
    for part, counts in expected.items():
        got = record["tokens"][part]
        assert (got["real"], got["padded"]) == (counts["real"], counts["padded"]), part
        assert got["padding_ratio"] == round(counts["padded"] / counts["real"], 4)
    assert record["train_real_tokens_per_s"] == pytest.approx(2 * sum(train) / record["train_time_s"], rel=1e-2)


def test_resume_mid_epoch_continues_the_same_order_without_repeating_a_row(glue_root, tiny_run_overrides, tmp_path,
                                                                           monkeypatch):
    from regbench.models.classification import SequenceClassificationModule
    from regbench.train import run

    overrides = tiny_run_overrides("glue/rte", glue_root / "rte", "trainer.max_epochs=1", "seed=9",
                                   "checkpoint.every_n_train_steps=2")  # 6 batches of 8 per epoch
    original = SequenceClassificationModule.on_train_batch_start
    seen: list = []

    class Preempted(RuntimeError):
        pass

    def record_rows(self, batch, batch_idx, stop_at=None):
        if stop_at is not None and (self.current_epoch, batch_idx) == stop_at:
            raise Preempted("simulated preemption")
        seen.append([tuple(r) for r in batch["input_ids"].tolist()])
        return original(self, batch, batch_idx)

    monkeypatch.setattr(SequenceClassificationModule, "on_train_batch_start", record_rows)
    run(compose_config(overrides, tmp_path / "straight"))
    straight, seen[:] = list(seen), []

    # killed at epoch 0 batch 5: last.ckpt was written after batch 3 (step 4); batch 4 is lost
    monkeypatch.setattr(SequenceClassificationModule, "on_train_batch_start",
                        lambda self, batch, idx: record_rows(self, batch, idx, stop_at=(0, 5)))
    with pytest.raises(Preempted):
        run(compose_config(overrides, tmp_path / "resumed"))
    first, seen[:] = list(seen), []
    monkeypatch.setattr(SequenceClassificationModule, "on_train_batch_start", record_rows)
    run(compose_config(overrides, tmp_path / "resumed"))  # resume=auto from the mid-epoch last.ckpt
    second = list(seen)

    record = _metrics(tmp_path / "resumed")
    assert [r["step"] for r in record["resumes"]] == [4]
    assert first == straight[:5] and second == straight[4:]  # batch 4 again, then the rest, in order
    epoch0 = first[:4] + second[:2]
    assert sorted(r for b in epoch0 for r in b) == sorted(r for b in straight[:6] for r in b)  # each row once
    assert record["history"] == _metrics(tmp_path / "straight")["history"]


def test_a_row_of_several_sequences_counts_its_longest_times_their_number():
    """MMLU rows hold one sequence per choice, padded together: sorting uses the padded size."""
    import datasets

    from regbench.data.datamodule import token_lengths

    rows = datasets.Dataset.from_dict({"choice_ids": [[[1, 2], [3, 4, 5]], [[1]], [], [[1, 2, 3, 4], [1], [2]]]})
    assert token_lengths(rows, ("input_ids", "choice_ids")) == [6, 1, 0, 12]
