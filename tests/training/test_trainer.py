"""Early stopping on a validation split."""

import pyro
import pytest
import torch

from ppl_vae import (
    CheckpointOptions,
    ModelConfig,
    TrainConfig,
    Trainer,
    build_pair,
    fit,
    load_dataset,
)
from ppl_vae.data.datasets import DataError
from ppl_vae.models.config import ConfigError
from ppl_vae.training.schedules import scheduled_lr

SMALL = ModelConfig(event_shape=(1, 28, 28), z_dim=4, hidden_dims=(32,), likelihood="bernoulli")


@pytest.fixture
def data():
    data = load_dataset("binarized-mnist-sample", validation_size=500)
    data.train, data.train_labels, data.test = data.train[:1000], data.train_labels[:1000], data.test[:500]
    return data


def test_hold_out_moves_the_last_training_images_into_valid():
    full = load_dataset("mnist-sample")
    held = load_dataset("mnist-sample", validation_size=1000)
    torch.testing.assert_close(held.valid, full.train[-1000:], rtol=0, atol=0)
    torch.testing.assert_close(held.train, full.train[:-1000], rtol=0, atol=0)
    assert held.valid_labels.tolist() == full.train_labels[-1000:].tolist()
    with pytest.raises(DataError, match="between 1 and"):
        load_dataset("mnist-sample", validation_size=10_000)


def test_early_stopping_stops_after_patience_and_keeps_the_best_epoch(data):
    model, guide = build_pair(SMALL)
    # a learning rate this large makes the validation ELBO get worse after the first epochs
    trainer = Trainer(model, guide, data, TrainConfig(epochs=30, batch_size=100, lr=0.05, patience=2))
    metrics = trainer.run(progress=False)
    best = int(metrics.loc[metrics["valid_elbo"].idxmax(), "epoch"])
    assert len(metrics) == best + 2 < 30  # stopped 2 epochs after the best one
    final = {name: value.clone() for name, value in model.state_dict().items()}
    row = trainer.restore_best()
    assert row["epoch"] == best
    kept = model.state_dict()
    for name, value in trainer.best_weights["model"].items():
        torch.testing.assert_close(kept[name], value, rtol=0, atol=0)
    assert any(not torch.equal(final[name], kept[name]) for name in kept)


def test_patience_without_a_validation_split_is_an_error():
    data = load_dataset("binarized-mnist-sample")
    model, guide = build_pair(SMALL)
    with pytest.raises(ValueError, match="needs a validation split"):
        Trainer(model, guide, data, TrainConfig(patience=3))


def test_learning_rate_decays_when_the_validation_elbo_stalls(data):
    model, guide = build_pair(SMALL)
    config = TrainConfig(epochs=10, batch_size=100, lr=0.1, lr_decay=0.5, lr_patience=0)
    metrics = Trainer(model, guide, data, config).run(progress=False)
    lrs = metrics["lr"].tolist()
    assert lrs[0] == 0.1 and lrs[-1] < 0.1  # this large a rate stalls within 10 epochs
    # the rate is halved after every lr_patience + 1 epochs in a row that do not beat the best
    best, expected, stalled = -float("inf"), [0.1], 0
    for valid in metrics["valid_elbo"].tolist()[:-1]:
        stalled = 0 if valid > best else stalled + 1
        best = max(best, valid)
        decay = stalled > config.lr_patience
        stalled = 0 if decay else stalled
        expected.append(expected[-1] * (0.5 if decay else 1.0))
    assert lrs == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("options, message", [
    ({"lr_decay": 0.5}, "needs a validation split"),
    ({"lr_decay": 1.5}, r"lr_decay must be in \(0, 1\]"),
], ids=["no-validation", "decay-above-1"])
def test_bad_learning_rate_decay(options, message):
    data = load_dataset("binarized-mnist-sample")
    model, guide = build_pair(SMALL)
    with pytest.raises(ValueError, match=message):  # the config refuses what it can judge alone
        Trainer(model, guide, data, TrainConfig(**options))


def test_burda_schedule_sets_each_steps_learning_rate(data):
    model, guide = build_pair(SMALL)
    config = TrainConfig(epochs=4, batch_size=100, lr=1e-3, lr_schedule="burda")
    trainer = Trainer(model, guide, data, config)
    seen = []
    trainer.run(progress=False, after_step=lambda step: seen.append(trainer.step.optimizer.param_groups[0]["lr"]))
    total = 4 * trainer.steps_per_epoch
    assert len(seen) == total
    assert seen == [scheduled_lr("burda", 1e-3, step, total) for step in range(total)]
    assert seen[0] == 1e-3 and seen[-1] < seen[0]


def test_resume_mid_epoch_keeps_the_burda_schedule(data, tmp_path):
    config = TrainConfig(epochs=12, batch_size=100, lr=1e-3, lr_schedule="burda")  # 120 steps

    def pair():
        torch.manual_seed(0)
        return build_pair(SMALL)

    reference = Trainer(*pair(), data, config, tmp_path, CheckpointOptions(every_steps=5, keep=100)).run(progress=False)
    resumed = Trainer(*pair(), data, config)
    resumed.load_state_dict(torch.load(tmp_path / f"train-{25:09d}.pt", weights_only=True))  # epoch 3, step 5
    metrics = resumed.run(progress=False)
    assert metrics.drop(columns="seconds").equals(reference.drop(columns="seconds"))
    # the last stage begins at step 1093/3280 * 120 = 40, after the checkpoint
    assert reference["lr"].iloc[2] > reference["lr"].iloc[4] == reference["lr"].iloc[-1]


@pytest.mark.parametrize("options, message", [
    ({"lr_schedule": "cosine"}, "is 'cosine', not a known learning-rate schedule; choose from constant, burda"),
    ({"lr_schedule": "burda", "lr_decay": 0.5}, "exclude each other"),
], ids=["unknown", "with-plateau-decay"])
def test_bad_learning_rate_schedule(data, options, message):
    model, guide = build_pair(SMALL)
    with pytest.raises(ValueError, match=message):
        Trainer(model, guide, data, TrainConfig(**options))


def test_resume_keeps_the_learning_rate_schedule(data, tmp_path):
    """A run resumed mid-epoch from a checkpoint decays the rate at the same epochs as one that never stopped."""
    config = TrainConfig(epochs=10, batch_size=100, lr=0.1, lr_decay=0.5, lr_patience=0)

    def pair():
        torch.manual_seed(0)
        return build_pair(SMALL)

    reference = Trainer(*pair(), data, config, tmp_path, CheckpointOptions(every_steps=5, keep=100)).run(progress=False)
    decayed = reference.loc[reference["lr"] < 0.1, "epoch"]
    assert len(decayed) and decayed.min() > 2  # the schedule acted
    # the middle of the epoch whose end decays the rate: a schedule that forgot the best ELBO so far would not
    checkpoint = tmp_path / f"train-{(decayed.min() - 2) * 10 + 5:09d}.pt"
    resumed = Trainer(*pair(), data, config)
    resumed.load_state_dict(torch.load(checkpoint, weights_only=True))
    metrics = resumed.run(progress=False)
    assert metrics.drop(columns="seconds").equals(reference.drop(columns="seconds"))


def test_iwae_training_keeps_the_epoch_with_the_best_validation_iwae_bound(data, monkeypatch):
    """IWAE training need not raise the ELBO: early stopping follows the validation IWAE bound."""
    import ppl_vae.training.trainer

    calls = {"valid": 0}

    def fake_evaluate(model, guide, data, split="test", elbo=None, distributed=None):
        if split != "valid":
            return -100.0
        if elbo is None:  # the ELBO: worse every epoch
            calls["valid"] += 1
            return -100.0 - calls["valid"]
        assert type(elbo).__name__ == "IWAE_ELBO" and elbo.num_particles == 3
        return -100.0 + calls["valid"]  # the IWAE bound: better every epoch

    monkeypatch.setattr(ppl_vae.training.trainer, "evaluate_elbo", fake_evaluate)
    model, guide = build_pair(SMALL)
    config = TrainConfig(epochs=5, batch_size=500, elbo="iwae", num_particles=3, patience=1)
    trainer = Trainer(model, guide, data, config)
    metrics = trainer.run(progress=False)
    assert metrics["valid_iwae"].tolist() == [-99.0, -98.0, -97.0, -96.0, -95.0]
    assert metrics["valid_elbo"].tolist() == [-101.0, -102.0, -103.0, -104.0, -105.0]
    assert trainer.restore_best()["epoch"] == 5 and not trainer.stopped_early


def test_trace_training_keeps_the_epoch_with_the_best_validation_elbo(data, monkeypatch):
    import ppl_vae.training.trainer

    values = iter([-101.0, -99.0, -100.0, -100.5])
    monkeypatch.setattr(ppl_vae.training.trainer, "evaluate_elbo",
                        lambda model, guide, data, split="test", elbo=None, distributed=None:
                        next(values) if split == "valid" else -100.0)
    model, guide = build_pair(SMALL)
    trainer = Trainer(model, guide, data, TrainConfig(epochs=10, batch_size=500, patience=2))
    metrics = trainer.run(progress=False)
    assert "valid_iwae" not in metrics and len(metrics) == 4 and trainer.stopped_early
    assert trainer.restore_best()["epoch"] == 2


@pytest.mark.parametrize("model_options", [{}, {"model": "hierarchical", "z_dims": (4, 2), "layer_widths": (16, 8)},
                                           {"model": "label", "num_classes": 10}], ids=["vae", "hierarchical", "label"])
def test_init_output_bias_starts_p_x_given_z_at_the_data_mean(data, model_options):
    options = {"z_dim": 4, "hidden_dims": (16,), "likelihood": "bernoulli", **model_options}
    model, guide = build_pair(ModelConfig(**options))
    before = {name: value.clone() for name, value in model.state_dict().items()}
    Trainer(model, guide, data, TrainConfig(epochs=1, init_output_bias=True))
    changed = [name for name, value in model.state_dict().items() if not torch.equal(value, before[name])]
    assert len(changed) == 1 and changed[0].endswith("bias"), changed  # only the decoder's output bias
    expected = torch.logit(data.train.mean(0).clamp(1e-3, 1 - 1e-3)).flatten()
    torch.testing.assert_close(model.state_dict()[changed[0]], expected, rtol=0, atol=0)


def test_init_output_bias_trains_faster_on_binary_images(data):
    """The point of the option: from the same seed, one epoch ends with a higher test ELBO."""
    elbos = {}
    for init in (False, True):
        pyro.clear_param_store()
        torch.manual_seed(0)
        model, guide = build_pair(ModelConfig(z_dim=4, hidden_dims=(32,), likelihood="bernoulli", activation="tanh"))
        metrics = fit(model, guide, data, TrainConfig(epochs=1, batch_size=50, init_output_bias=init), progress=False)
        elbos[init] = metrics["test_elbo"].iloc[-1]
    assert elbos[True] > elbos[False] + 5, elbos


def test_init_output_bias_needs_a_model_with_an_output_bias(data):
    model, guide = build_pair(ModelConfig(z_dim=3, hidden_dims=(16,), model="quadrants", visible_quadrants=2))
    with pytest.raises(ConfigError, match="init_output_bias is not available here: the .* model has no decoder output bias"):
        Trainer(model, guide, data, TrainConfig(epochs=1, init_output_bias=True))
