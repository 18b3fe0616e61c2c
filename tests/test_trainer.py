"""Early stopping on a validation split."""

import pytest
import torch

from ppl_vae import ModelConfig, TrainConfig, Trainer, build_pair, load_dataset
from ppl_vae.data import DataError

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
