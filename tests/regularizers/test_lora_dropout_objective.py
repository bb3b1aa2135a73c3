"""Issue 12, defects 2 and 3: LoRA Dropout's N-sample training objective, its test-time ensemble on
generation tasks (every decoding step averages the members' next-token distributions), and the general
rule that a hook a task kind does not honour is refused at start-up, before any weights load."""

from __future__ import annotations

import json
import math

import pytest
import torch
from transformers import GenerationConfig

from regbench.models.base import TRAINING_HOOKS
from regbench.models.seq2seq import Seq2SeqModule
from regbench.models.structure import task_model
from regbench.regularizers import RegularizerConfigError
from regbench.regularizers.lora_dropout import _MaskSwitch, factor_masks
from tests.conftest import compose_config
from tests.regularizers.backbones import BACKBONES, SEQ2SEQ, make_batch
from tests.regularizers.methods import stack
from tests.regularizers.test_lora_dropout import batch_of, randomize_adapters, tiny_model


def _masked_classifier(**params):
    """A tiny BERT classifier with LoRA Dropout (non-zero adapters, so masks matter), in training mode."""
    regularizer = stack("lora_dropout", r=4, p=0.5, **params)
    model = regularizer.apply(tiny_model())
    randomize_adapters(model)
    return regularizer, model.train(), {**batch_of(), "labels": torch.tensor([0, 1, 2, 1])}


def test_training_loss_is_the_mean_over_n_masked_passes():
    regularizer, model, batch = _masked_classifier(train_passes=3)
    torch.manual_seed(5)
    loss = regularizer.training_loss(model, batch)
    torch.manual_seed(5)
    passes = [model(**batch).loss for _ in range(3)]
    torch.testing.assert_close(loss, torch.stack(passes).mean())
    assert len({round(float(p), 6) for p in passes}) == 3, "the N passes must draw independent masks"
    assert regularizer.describe()["methods"]["lora_dropout"]["train_passes"] == 3


def test_one_training_pass_is_the_plain_single_instance_loss():
    regularizer, model, batch = _masked_classifier()
    member = regularizer.members[0]
    assert member.train_passes == 1 and not member.owns_training_loss()
    torch.manual_seed(6)
    loss = regularizer.training_loss(model, batch)
    torch.manual_seed(6)
    torch.testing.assert_close(loss, model(**batch).loss)


def _seq2seq_with_lora_dropout(backbone: str, passes: int):
    torch.manual_seed(0)
    regularizer = stack("lora_dropout", r=4, p=0.5, ensemble_passes=passes)
    model = regularizer.apply(BACKBONES[backbone][1]())
    randomize_adapters(model)
    # Greedy, no end token: every step is one argmax (the hand computation below).
    start = task_model(model).config.decoder_start_token_id
    task_model(model).generation_config = GenerationConfig(decoder_start_token_id=start, pad_token_id=0, num_beams=1,
                                                           do_sample=False)
    return regularizer, model.eval(), start


@pytest.mark.parametrize("backbone", SEQ2SEQ)
def test_generation_ensemble_averages_the_members_next_token_distributions(backbone, monkeypatch):
    """Greedy decoding with N=3 members equals a hand computation: at every step, the argmax of the mean
    of the 3 members' softmax, each member with its own masks fixed for the whole output."""
    regularizer, model, start = _seq2seq_with_lora_dropout(backbone, 3)
    member = regularizer.members[0]
    masks: dict = {}
    keep = _MaskSwitch.reset
    monkeypatch.setattr(_MaskSwitch, "reset", lambda self: (masks.update(self.fixed), keep(self)))
    source = make_batch(backbone, batch=3, length=8)
    inputs = {"input_ids": source["input_ids"], "attention_mask": source["attention_mask"]}
    with torch.no_grad():
        generated = regularizer.generate(model, **inputs, max_new_tokens=6)
    assert {key[1] for key in masks} == {0, 1, 2}, "three members, each with its own masks"

    switch, prefix = member._switch, torch.full((3, 1), start)
    with torch.no_grad():
        for _ in range(6):
            members = []
            for index in range(3):
                switch.fixed, switch.member = dict(masks), index
                members.append(torch.log_softmax(model(**inputs, decoder_input_ids=prefix).logits[:, -1], dim=-1))
            mean = torch.logsumexp(torch.stack(members), dim=0) - math.log(3)
            prefix = torch.cat([prefix, mean.argmax(-1, keepdim=True)], dim=1)
    switch.reset()
    assert torch.equal(generated, prefix)
    single = [torch.argmax(m, -1) for m in members]
    assert any(not torch.equal(single[0], s) for s in single[1:]), "members must disagree somewhere"


def test_generation_without_an_ensemble_is_the_plain_deterministic_decoding():
    regularizer, model, _ = _seq2seq_with_lora_dropout("bart", 1)
    source = make_batch("bart", batch=2, length=8)
    inputs = {"input_ids": source["input_ids"], "attention_mask": source["attention_mask"]}
    with torch.no_grad():
        ours = regularizer.generate(model, **inputs, max_new_tokens=5)
        plain = model.generate(**inputs, max_new_tokens=5)
    assert torch.equal(ours, plain)
    assert all(a.last_mask is None and b.last_mask is None for _, a, b in factor_masks(model))


def test_a_hook_the_task_kind_does_not_honour_is_refused():
    class EvaluatesWithoutTheRegularizer(Seq2SeqModule):
        honours = TRAINING_HOOKS  # calls model.generate itself

    with pytest.raises(RegularizerConfigError, match=r"\['generate', 'predict_logits'\].*does not honour"):
        stack("lora_dropout", ensemble_passes=3).check_task(EvaluatesWithoutTheRegularizer, "generation")
    stack("lora_dropout", ensemble_passes=1).check_task(EvaluatesWithoutTheRegularizer, "generation")

    class NoSchedules(Seq2SeqModule):
        honours = TRAINING_HOOKS - {"on_train_step"}

    with pytest.raises(RegularizerConfigError, match="on_train_step"):
        stack("drophead", schedule="v_shaped").check_task(NoSchedules, "generation")


def test_a_method_the_task_kind_cannot_serve_fails_before_any_weights_load(tmp_path, monkeypatch):
    from regbench import train

    def must_not_load(*args, **kwargs):
        raise AssertionError("backbone touched before the regularizer was checked against the task kind")

    monkeypatch.setattr("regbench.models.backbone.check_backbone", must_not_load)
    cfg = compose_config(["task=d2t/e2e", "backbone=bart-base", "regularizer=very_large_dropout"], tmp_path)
    with pytest.raises(RegularizerConfigError, match="very_large_dropout.*classification_head.*generation"):
        train.run(cfg)


def test_a_generation_run_evaluates_with_the_ensemble_and_records_it(tmp_path, monkeypatch):
    from regbench.train import run
    from tests.d2t_fixtures import save_tiny_bart, write_e2e

    member_masks: list[int] = []
    draw = _MaskSwitch.mask
    monkeypatch.setattr(_MaskSwitch, "mask", lambda self, owner, size, like: (
        member_masks.append(self.member) if self.member else None, draw(self, owner, size, like))[1])
    out = tmp_path / "run"
    run(compose_config([
        "task=d2t/e2e", f"task.data_dir={write_e2e(tmp_path / 'e2e', n_train=8, n_dev=2, n_test=2)}",
        "backbone=bart-base", f"backbone.path={save_tiny_bart(tmp_path / 'bart')}", "regularizer=lora_dropout",
        "regularizer.lora_dropout.ensemble_passes=2", "trainer.max_epochs=1", "data.batch_size=4",
        f"data.cache_dir={tmp_path / 'cache'}", "checkpoint.enabled=false", "logger=none",
        "task.generation.max_new_tokens=4", "task.generation.num_beams=2"], out))
    record = json.loads((out / "metrics.json").read_text())
    assert record["status"] == "ok"
    assert record["regularizer_params"]["methods"]["lora_dropout"]["ensemble_passes"] == 2
    assert member_masks and set(member_masks) == {1}, "the second member's passes ran during generation"
