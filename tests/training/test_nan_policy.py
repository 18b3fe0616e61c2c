import pytest
import torch

from ppl_vae import CheckpointOptions, ModelConfig, TrainConfig, Trainer, build_pair, load_dataset
from ppl_vae.infer.svi_step import NonFiniteLossError
from ppl_vae.training.nan_policy import readback_interval


@pytest.fixture(scope="module")
def data():
    data = load_dataset("binarized-mnist-sample")
    data.train = torch.bernoulli(data.train[:600], generator=torch.Generator().manual_seed(0))
    data.test, data.binarize = data.test[:100].round(), False
    return data


def planted(data, rows):
    """The data with a NaN in the given training images."""
    data = type(data)(**{**data.__dict__})
    data.train = data.train.clone()
    data.train[rows, 0, 0, 0] = float("nan")
    return data


def run(data, every: int, epochs: int = 2, **options):
    torch.manual_seed(0)
    trainer = Trainer(*build_pair(ModelConfig(z_dim=3, hidden_dims=(32,))), data,
                      TrainConfig(epochs=epochs, batch_size=100, seed=3), checkpoints=CheckpointOptions(**options))
    trainer.nan.every = every  # as on a GPU: results read back every `every` steps
    return trainer, trainer.run(progress=False)


def test_the_readback_interval_follows_the_device():
    assert readback_interval(torch.device("cpu")) == 1 and readback_interval(torch.device("cuda", 1)) == 20


@pytest.mark.parametrize("rows", [[], [0]], ids=["finite", "one-nan-image"])
def test_reading_back_every_few_steps_trains_the_same_run(data, rows):
    """Deferred readback changes when the host looks, not what is trained: the same metrics,
    skipped steps included, and the same weights."""
    data = planted(data, rows)
    (each, each_metrics), (deferred, deferred_metrics) = (run(data, 1, on_nan="skip"), run(data, 4, on_nan="skip"))
    assert deferred_metrics.drop(columns="seconds").equals(each_metrics.drop(columns="seconds"))
    assert deferred_metrics["skipped_steps"].tolist() == ([1, 2] if rows else [0, 0])
    for p, q in zip(each.step_parameters(), deferred.step_parameters()):
        assert torch.equal(p, q)


def test_a_deferred_stop_names_the_step_that_went_non_finite(data):
    """Every batch has a NaN: the first readback, after 4 steps, raises for step 1; skipped on
    the device, the non-finite steps move no parameter."""
    every_batch = planted(data, slice(None))
    with pytest.raises(NonFiniteLossError, match=r"at step 1 \(epoch 1\); non-finite: the batch \(argument 0"):
        run(every_batch, 4)
    with pytest.raises(NonFiniteLossError, match="5 steps in a row skipped"):
        run(every_batch, 4, on_nan="skip", max_skipped=4)
    trainer, metrics = run(every_batch, 4, epochs=1, on_nan="skip")
    torch.manual_seed(0)
    initial = [p for module in build_pair(ModelConfig(z_dim=3, hidden_dims=(32,))) for p in module.parameters()]
    assert metrics["skipped_steps"].tolist() == [6] and len(initial) == len(trainer.step_parameters())
    for p, q in zip(initial, trainer.step_parameters()):
        assert torch.equal(p, q)
