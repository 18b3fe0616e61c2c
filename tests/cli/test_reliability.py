"""Fault injection: kill -9 and resume, SIGTERM, broken and malicious checkpoints, NaN, disk errors."""

import errno
import json
import os
import pickle
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from ppl_vae import (
    CheckpointOptions,
    ModelConfig,
    TrainConfig,
    Trainer,
    build_pair,
    load_dataset,
    load_pair,
    save_checkpoint,
)
from ppl_vae.infer.svi_step import NonFiniteLossError
from ppl_vae.training.checkpoints import latest_checkpoint, load_checkpoint

TRAIN = ["train", "--dataset", "binarized-mnist-sample", "--epochs", "2", "--batch-size", "500", "--z-dim", "4",
         "--hidden-dims", "64", "--checkpoint-every-steps", "3", "--no-progress"]  # 20 steps per epoch


FAULT_INJECTION = str(Path(__file__).parents[1] / "fault_injection.py")  # ppl-vae with PPL_VAE_FAULT honoured


def ppl_vae(*args, fault=None, check=True):
    env = dict(os.environ, PPL_VAE_FAULT=fault or "")
    result = subprocess.run([sys.executable, FAULT_INJECTION, *args], capture_output=True, text=True, env=env,
                            timeout=300)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def parameters(run_dir):
    model, guide, _ = load_pair(run_dir)
    return [*model.parameters(), *guide.parameters()]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "full"
    ppl_vae(*TRAIN, "--out", str(out))
    return out


@pytest.mark.slow
def test_kill_9_and_resume_gives_the_same_run_bitwise(uninterrupted, tmp_path):
    """SIGKILL at seeded random steps; each resumed run ends bitwise equal to the uninterrupted one."""
    expected = pd.read_csv(uninterrupted / "metrics.csv").drop(columns="seconds")
    for kill_at in random.Random(0).sample(range(1, 40), 3):
        out = tmp_path / f"killed-at-{kill_at}"
        killed = ppl_vae(*TRAIN, "--out", str(out), fault=f"kill:{kill_at}", check=False)
        assert killed.returncode == -9, killed.stderr
        assert not (out / "checkpoint.pt").exists()  # no finished-run marker for a killed run
        ppl_vae("train", "--resume", str(out), "--no-progress")
        for p, q in zip(parameters(uninterrupted), parameters(out)):
            assert torch.equal(p, q), kill_at
        assert pd.read_csv(out / "metrics.csv").drop(columns="seconds").equals(expected), kill_at


def test_sigterm_writes_a_resumable_checkpoint(uninterrupted, tmp_path):
    out = tmp_path / "terminated"
    stopped = ppl_vae(*TRAIN, "--out", str(out), fault="term:7", check=False)
    assert stopped.returncode == 128 + 15
    assert "SIGTERM" in stopped.stderr and f"resume with: ppl-vae train --resume {out}" in stopped.stderr
    assert "Traceback" not in stopped.stderr
    state, path, _ = latest_checkpoint(out / "checkpoints")
    assert path.name == "train-000000007.pt"
    ppl_vae("train", "--resume", str(out), "--no-progress")
    for p, q in zip(parameters(uninterrupted), parameters(out)):
        assert torch.equal(p, q)


def test_resume_with_a_new_epoch_budget_ends_as_a_run_with_that_budget(uninterrupted, tmp_path):
    """A 5-epoch run stopped in its second epoch and resumed with ``--epochs 2`` is the 2-epoch run."""
    out = tmp_path / "cut"
    stopped = ppl_vae(*TRAIN, "--epochs", "5", "--out", str(out), fault="term:27", check=False)
    assert stopped.returncode == 128 + 15, stopped.stderr
    ppl_vae("train", "--resume", str(out), "--epochs", "2", "--no-progress")
    for p, q in zip(parameters(uninterrupted), parameters(out)):
        assert torch.equal(p, q)
    expected = pd.read_csv(uninterrupted / "metrics.csv").drop(columns="seconds")
    assert pd.read_csv(out / "metrics.csv").drop(columns="seconds").equals(expected)
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["epochs"] == 2 and config["epochs_changed"] == [{"from": 5, "to": 2}]


def test_resume_with_a_longer_budget_extends_a_finished_run_to_the_run_with_that_budget(uninterrupted, tmp_path):
    """A finished 2-epoch run resumed with ``--epochs 3`` ends bitwise as the 3-epoch run."""
    three = tmp_path / "three"
    ppl_vae(*TRAIN, "--epochs", "3", "--out", str(three))
    out = tmp_path / "extended"
    shutil.copytree(uninterrupted, out)
    finished = (out / "checkpoint.pt").read_bytes()
    ppl_vae("train", "--resume", str(out), "--epochs", "3", "--no-progress")
    for p, q in zip(parameters(three), parameters(out)):
        assert torch.equal(p, q)
    expected = pd.read_csv(three / "metrics.csv").drop(columns="seconds")
    assert pd.read_csv(out / "metrics.csv").drop(columns="seconds").equals(expected)
    assert (out / "checkpoints" / "finished-epoch-2.pt").read_bytes() == finished  # the 2-epoch weights are kept
    assert json.loads((out / "config.json").read_text())["epochs_changed"] == [{"from": 2, "to": 3}]
    again = ppl_vae("train", "--resume", str(out), "--epochs", "3", "--no-progress")
    assert "is a finished run; nothing to resume" in again.stderr


def test_a_finished_run_without_training_checkpoints_is_not_extended(uninterrupted, tmp_path):
    out = tmp_path / "bare"
    shutil.copytree(uninterrupted, out)
    for path in (out / "checkpoints").glob("train-*.pt"):
        path.unlink()
    before = {path.name: path.read_bytes() for path in out.iterdir() if path.is_file()}
    refused = ppl_vae("train", "--resume", str(out), "--epochs", "3", "--no-progress", check=False)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert "has no training checkpoint to go on from" in refused.stderr
    assert {path.name: path.read_bytes() for path in out.iterdir() if path.is_file()} == before


def test_resume_refuses_a_new_epoch_budget_under_a_scaled_schedule(tmp_path):
    out = tmp_path / "burda"
    stopped = ppl_vae(*TRAIN, "--lr-schedule", "burda", "--out", str(out), fault="term:3", check=False)
    assert stopped.returncode == 128 + 15, stopped.stderr
    before = (out / "config.json").read_text()
    refused = ppl_vae("train", "--resume", str(out), "--epochs", "3", "--no-progress", check=False)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert "--epochs cannot change on --resume with --lr-schedule burda" in refused.stderr
    assert (out / "config.json").read_text() == before


class _Payload:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


@pytest.mark.parametrize("damage", ["truncated", "malicious"])
def test_a_broken_newest_checkpoint_is_passed_over(damage, uninterrupted, tmp_path):
    out = tmp_path / damage
    ppl_vae(*TRAIN, "--out", str(out), fault="kill:25", check=False)
    newest = sorted((out / "checkpoints").glob("train-*.pt"))[-1]
    target = tmp_path / "pwned"
    if damage == "truncated":
        newest.write_bytes(newest.read_bytes()[:2000])
    else:
        with open(newest, "wb") as f:
            pickle.dump({"format": "ppl_vae/train-1", "model": _Payload(str(target))}, f)
    resumed = ppl_vae("train", "--resume", str(out), "--no-progress")
    assert f"passed over broken checkpoint {newest.name}" in resumed.stderr
    assert not target.exists()  # the payload never ran
    for p, q in zip(parameters(uninterrupted), parameters(out)):
        assert torch.equal(p, q)


@pytest.fixture(scope="module")
def small_data():
    data = load_dataset("binarized-mnist-sample")  # binarized once, so that NaN can be planted in a batch
    generator = torch.Generator().manual_seed(0)
    data.train = torch.bernoulli(data.train[:600], generator=generator)
    data.test = torch.bernoulli(data.test[:100], generator=generator)
    data.binarize = False
    return data


def small_pair():
    torch.manual_seed(0)
    return build_pair(ModelConfig(z_dim=3, hidden_dims=(32,)))


def test_resume_in_process_matches(small_data, tmp_path):
    config = TrainConfig(epochs=2, batch_size=100, seed=3)
    reference = Trainer(*small_pair(), small_data, config).run(progress=False)
    model, guide = small_pair()
    Trainer(model, guide, small_data, config, tmp_path, CheckpointOptions(every_steps=4, keep=10)).run(progress=False)
    mid = tmp_path / "train-000000008.pt"  # the middle of the second epoch
    model2, guide2 = small_pair()
    resumed = Trainer(model2, guide2, small_data, config)
    resumed.load_state_dict(torch.load(mid, weights_only=True))
    metrics = resumed.run(progress=False)
    assert metrics.drop(columns="seconds").equals(reference.drop(columns="seconds"))
    for p, q in zip([*model.parameters(), *guide.parameters()], [*model2.parameters(), *guide2.parameters()]):
        assert torch.equal(p, q)
    assert len(list(tmp_path.glob("train-*.pt"))) == 4  # steps 4, 6 (epoch end), 8, 12 (epoch end)


def with_nan(data):
    data = type(data)(**{**data.__dict__})
    data.train = data.train.clone()
    data.train[:, 0, 0, 0] = float("nan")  # every batch has one
    return data


def test_nan_in_a_batch_stops_naming_step_and_site(small_data):
    trainer = Trainer(*small_pair(), with_nan(small_data), TrainConfig(epochs=1, batch_size=100))
    with pytest.raises(NonFiniteLossError, match=r"at step 1 \(epoch 1\); non-finite: the batch \(argument 0"):
        trainer.run(progress=False)


def test_a_site_that_goes_non_finite_is_named(small_data):
    """A finite batch and finite parameters, but a likelihood scale that overflows to inf."""
    from ppl_vae.infer.diagnose import nonfinite_site

    model, guide = build_pair(ModelConfig(z_dim=3, hidden_dims=(32,), likelihood="gaussian"))
    with torch.no_grad():
        model.likelihood.log_scale.fill_(1000.0)  # exp(1000) = inf
    assert nonfinite_site(model, guide, small_data.train[:10]) == "model site 'x'"


def test_nan_skip_counts_skipped_steps_and_gives_up(small_data):
    data = type(small_data)(**{**small_data.__dict__})
    data.train = small_data.train.clone()
    data.train[0, 0, 0, 0] = float("nan")  # one datapoint: one skipped step per epoch
    metrics = Trainer(*small_pair(), data, TrainConfig(epochs=2, batch_size=100),
                      checkpoints=CheckpointOptions(on_nan="skip")).run(progress=False)
    assert metrics["skipped_steps"].tolist() == [1, 2]  # cumulative
    assert metrics["test_elbo"].notna().all() and metrics["test_elbo"].iloc[-1] > metrics["test_elbo"].iloc[0]
    with pytest.raises(NonFiniteLossError, match="3 steps in a row skipped"):
        Trainer(*small_pair(), with_nan(small_data), TrainConfig(epochs=1, batch_size=100),
                checkpoints=CheckpointOptions(on_nan="skip", max_skipped=2)).run(progress=False)


def test_nan_in_a_parameter_is_named(small_data):
    model, guide = small_pair()
    with torch.no_grad():
        guide.loc_head.weight[0, 0] = float("nan")
    with pytest.raises(NonFiniteLossError, match="parameter 'loc_head.weight'"):
        Trainer(model, guide, small_data, TrainConfig(epochs=1, batch_size=100)).run(progress=False)


def test_a_failed_write_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    config = ModelConfig(event_shape=(4,), z_dim=2, hidden_dims=(8,))
    model, guide = build_pair(config)
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, model, guide, config, epoch=1)
    before = path.read_bytes()

    def full_disk(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(path, model, guide, config, epoch=2)
    assert path.read_bytes() == before and load_checkpoint(path)["extra"] == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temporary file left


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_output_directory(tmp_path):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    result = ppl_vae("train", "--epochs", "1", "--out", str(out), check=False)
    assert result.returncode == 2 and "cannot write" in result.stderr and "Traceback" not in result.stderr


def test_disk_error_during_a_run_is_one_line(tmp_path, monkeypatch, capsys):
    import ppl_vae.cli.training_run
    from ppl_vae.cli.main import main

    def refuse(out, run_config):
        raise OSError(errno.EROFS, "Read-only file system", str(out / "config.json"))

    monkeypatch.setattr(ppl_vae.cli.training_run, "write_run_config", refuse)
    monkeypatch.setattr("ppl_vae.cli.train_command.write_run_config", refuse)
    assert main(["train", "--epochs", "1", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot write" in err and "Read-only file system" in err
