"""TensorBoard logs: the scalars read back equal metrics.csv; the images are there; the extra is named when missing."""

import sys

import pandas as pd
import pytest
import torch

from ppl_vae import ModelConfig, TrainConfig, build_pair, fit, load_dataset
from ppl_vae.cli import main

TINY = ["train", "--dataset", "binarized-mnist-sample", "--epochs", "2", "--batch-size", "500", "--z-dim", "2",
        "--hidden-dims", "8", "--no-progress"]


def read(log_dir):
    """The event files of ``log_dir``."""
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    events = event_accumulator.EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    return events


def test_the_cli_logs_every_epochs_metrics_and_images(tmp_path) -> None:
    pytest.importorskip("tensorboard")  # the [tensorboard] extra (part of [test])
    out = tmp_path / "run"
    assert main([*TINY, "--out", str(out), "--tensorboard"]) == 0
    metrics, events = pd.read_csv(out / "metrics.csv"), read(out / "tensorboard")
    for name in ("train_elbo", "test_elbo", "lr", "beta"):
        logged = events.Scalars(name)
        assert [e.step for e in logged] == metrics["epoch"].tolist()
        torch.testing.assert_close([e.value for e in logged], metrics[name].astype("float32").tolist(),
                                   rtol=1e-6, atol=0)
    assert {"samples", "reconstructions"} <= set(events.Tags()["images"])


def test_fit_logs_from_python(tmp_path) -> None:
    pytest.importorskip("tensorboard")
    data = load_dataset("binarized-mnist-sample")
    model, guide = build_pair(ModelConfig(z_dim=2, hidden_dims=(8,)))
    metrics = fit(model, guide, data, TrainConfig(epochs=2, batch_size=500), progress=False, tensorboard=tmp_path / "tb")
    logged = read(tmp_path / "tb").Scalars("test_elbo")
    torch.testing.assert_close([e.value for e in logged], metrics["test_elbo"].astype("float32").tolist(),
                               rtol=1e-6, atol=0)


def test_without_the_extra_it_is_one_line_naming_it(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if tensorboard were not installed
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        sys.exit(main([*TINY, "--out", str(out), "--tensorboard"]))
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1 and 'pip install "ppl_vae[tensorboard]"' in err, err
    assert not out.exists()
