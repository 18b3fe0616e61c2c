import json
import logging
import math
import subprocess
import sys

import pandas as pd
import pytest
import torch

from ppl_vae import load_pair
from ppl_vae.cli.main import main, show_notices

RUN_FILES = {"config.json", "metrics.csv", "loss_curve.png", "samples.png", "reconstructions.png", "checkpoint.pt",
             "checkpoints"}


def test_train_writes_a_complete_run(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--dataset", "binarized-mnist-sample", "--epochs", "2", "--z-dim", "4",
                 "--hidden-dims", "64", "--batch-size", "256", "--out", str(out), "--no-progress"])
    assert code == 0
    assert {p.name for p in out.iterdir()} == RUN_FILES
    metrics = pd.read_csv(out / "metrics.csv")
    assert list(metrics["epoch"]) == [1, 2]
    values = metrics[["train_elbo", "test_elbo", "seconds"]].to_numpy()
    assert values.dtype.kind == "f" and all(math.isfinite(v) for v in values.ravel())
    assert (metrics["test_elbo"] < 0).all()
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["likelihood"] == "bernoulli"  # auto, for binary data
    assert config["train"]["epochs"] == 2 and config["device"] == "cpu"
    model, guide, model_config = load_pair(out)
    assert model_config.z_dim == 4
    assert guide(torch.zeros(2, 1, 28, 28)).shape == (2, 4)
    for name in ("samples.png", "reconstructions.png", "loss_curve.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_train_with_the_iwae_bound_and_burda_schedule(tmp_path):
    out = tmp_path / "run"
    code = main(["train", "--dataset", "binarized-mnist-sample", "--epochs", "3", "--z-dim", "4", "--hidden-dims", "64",
                 "--batch-size", "500", "--elbo", "iwae", "--num-particles", "5", "--lr-schedule", "burda",
                 "--out", str(out), "--no-progress"])
    assert code == 0
    config = json.loads((out / "config.json").read_text())["train"]
    assert (config["elbo"], config["num_particles"], config["lr_schedule"]) == ("iwae", 5, "burda")
    metrics = pd.read_csv(out / "metrics.csv")
    assert metrics["train_elbo"].is_monotonic_increasing  # the IWAE bound on the training batches
    assert metrics["lr"].is_monotonic_decreasing and 1e-3 > metrics["lr"].iloc[-1] >= 1e-4  # the last step's rate


def test_init_from_starts_from_a_finished_runs_weights(tmp_path, capsys):
    small = ["--dataset", "binarized-mnist-sample", "--z-dim", "4", "--hidden-dims", "64", "--batch-size", "500",
             "--no-progress"]
    assert main(["train", *small, "--epochs", "1", "--out", str(tmp_path / "first")]) == 0
    # a rate this small leaves the weights where they started (Adam moves each by about lr per step)
    assert main(["train", *small, "--epochs", "1", "--lr", "1e-12", "--init-from", str(tmp_path / "first"),
                 "--out", str(tmp_path / "second")]) == 0
    config = json.loads((tmp_path / "second" / "config.json").read_text())
    assert config["init_from"] == {"path": str(tmp_path / "first" / "checkpoint.pt"), "epoch": 1}
    (first, first_guide, _), (second, second_guide, _) = load_pair(tmp_path / "first"), load_pair(tmp_path / "second")
    for trained, started in ((first, second), (first_guide, second_guide)):
        for (name, value), (_, copy) in zip(trained.state_dict().items(), started.state_dict().items()):
            torch.testing.assert_close(copy, value, rtol=0, atol=1e-9, msg=name)
    capsys.readouterr()
    first = tmp_path / "first" / "checkpoint.pt"
    assert_usage_error([*small, "--z-dim", "5", "--init-from", str(tmp_path / "first")],
                       f"--init-from: {first} holds another model: z_dim 4 (asked: 5)", tmp_path, capsys)
    assert_usage_error([*small, "--init-from", str(tmp_path / "nothing")],
                       f"--init-from: checkpoint {tmp_path / 'nothing'} not found", tmp_path, capsys)


def test_auto_likelihood_for_grayscale_and_conv_network(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--network", "conv", "--hidden-dims", "32", "--epochs", "1", "--z-dim", "2",
                 "--batch-size", "500", "--out", str(out), "--no-progress", "--likelihood", "auto"]) == 0
    assert json.loads((out / "config.json").read_text())["model"]["likelihood"] == "continuous-bernoulli"


BAD_INPUTS = {
    "dataset": (["--dataset", "svhn"], "invalid choice: 'svhn'"),
    "likelihood": (["--likelihood", "poisson"], "invalid choice: 'poisson'"),
    "guide": (["--guide", "flowy"], "invalid choice: 'flowy' (choose from 'diag', 'full-rank', 'planar', 'iaf')"),
    "device": (["--device", "tpu"], "unknown device 'tpu'; choose from auto, cpu, cuda, cuda:N"),
    "z-dim": (["--z-dim", "0"], "must be at least 1"),
    "batch-size": (["--batch-size", "-3"], "must be at least 1"),
    "beta": (["--beta", "0"], "must be positive"),
    "support": (["--dataset", "mnist-sample", "--likelihood", "bernoulli"], "needs binary data"),
    "data-dir": (["--dataset", "binarized-mnist-static", "--data-dir", "/nonexistent"], "binarized_mnist_train.amat"),
    "lr-decay": (["--lr-decay", "1.5"], "--lr-decay must be in (0, 1] (1: off), got 1.5"),
    "lr-decay-without-validation": (["--lr-decay", "0.5"], "--lr-decay needs a validation split"),
    "init-from-and-resume": (["--resume", "some-run", "--init-from", "other-run"],
                             "--init-from starts a new run; --resume goes on from the run's own checkpoint"),
    "lr-schedule": (["--lr-schedule", "cosine"], "invalid choice: 'cosine' (choose from 'constant', 'burda')"),
    "lr-schedule-and-decay": (["--lr-schedule", "burda", "--lr-decay", "0.5", "--validation-size", "1000"],
                              "--lr-schedule burda and --lr-decay exclude each other"),
}
BAD_INPUTS["init-output-bias-unavailable"] = (
    ["--dataset", "mnist-sample", "--likelihood", "continuous-bernoulli", "--init-output-bias"],
    "--init-output-bias is not available here: the 'continuous-bernoulli' likelihood has no closed-form inverse of its mean")
if not torch.cuda.is_available():
    BAD_INPUTS["cuda"] = (["--device", "cuda"], "CUDA is not available")


def assert_usage_error(args, message, tmp_path, capsys):
    """``ppl-vae train ARGS`` fails with one line naming the problem, exit code 2, and no run directory."""
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        sys.exit(main(["train", "--epochs", "1", "--out", str(out), *args]))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("args, message", list(BAD_INPUTS.values()), ids=list(BAD_INPUTS))
def test_bad_input_is_one_line_exit_2_and_no_run_dir(args, message, tmp_path, capsys):
    assert_usage_error(args, message, tmp_path, capsys)


def test_existing_run_directory_is_not_touched(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.csv").write_text("precious\n")
    assert main(["train", "--epochs", "1", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (out / "metrics.csv").read_text() == "precious\n"


def test_nan_in_the_data_is_refused(tmp_path, capsys, monkeypatch):
    import ppl_vae.cli.train_command

    real = ppl_vae.cli.train_command.load_dataset

    def with_nan(*args, **kwargs):
        data = real(*args, **kwargs)
        data.train[0, 0, 0, 0] = float("nan")
        return data

    monkeypatch.setattr(ppl_vae.cli.train_command, "load_dataset", with_nan)
    out = tmp_path / "run"
    assert main(["train", "--likelihood", "continuous-bernoulli", "--out", str(out)]) == 2
    assert "NaN" in capsys.readouterr().err
    assert not out.exists()


def test_module_entry_point_reports_errors_without_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "ppl_vae", "train", "--dataset", "nope", "--out", str(tmp_path / "r")],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "invalid choice: 'nope'" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("guide, flags", [("iaf", ["--num-flows", "2", "--stable", "--permutation", "random"]),
                                          ("planar", ["--num-flows", "3", "--flow-hidden-dims", "8"]),
                                          ("full-rank", [])])
def test_train_with_each_guide_and_its_options(guide, flags, tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--dataset", "binarized-mnist-sample", "--guide", guide, *flags, "--epochs", "1",
                 "--z-dim", "3", "--hidden-dims", "32", "--batch-size", "500", "--out", str(out), "--no-progress"]) == 0
    config = json.loads((out / "config.json").read_text())["model"]
    assert config["guide"] == guide
    model, loaded_guide, _ = load_pair(out)
    assert type(loaded_guide).__name__ == {"iaf": "IAFGuide", "planar": "PlanarFlowGuide",
                                           "full-rank": "FullRankGuide"}[guide]
    if guide == "iaf":
        assert config["guide_options"] == {"num_flows": 2, "stable": True, "permutation": "random"}
        assert len(loaded_guide.flows) == 2


@pytest.mark.parametrize("args, message", [
    (["--guide", "diag", "--num-flows", "3"], "--num-flows is an option of the flow guides (planar, iaf), not of 'diag'"),
    (["--guide", "planar", "--stable"], "--stable is an option of the iaf guide only"),
    (["--guide", "iaf", "--z-dim", "1"], "the IAF guide needs z_dim >= 2"),
    (["--guide", "iaf", "--permutation", "sorted"], "invalid choice: 'sorted'"),
], ids=["flow-flag-on-diag", "stable-on-planar", "iaf-z-dim-1", "permutation"])
def test_bad_guide_flags(args, message, tmp_path, capsys):
    assert_usage_error(args, message, tmp_path, capsys)


def test_label_conditional_run(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--dataset", "binarized-mnist-sample", "--conditional", "label", "--learned-prior",
                 "--epochs", "1", "--z-dim", "3", "--hidden-dims", "32", "--batch-size", "500", "--out", str(out),
                 "--no-progress"]) == 0
    assert {p.name for p in out.iterdir()} == RUN_FILES
    model, guide, config = load_pair(out)
    assert config.model == "label" and config.num_classes == 10 and config.learned_prior
    assert main(["evaluate", str(out), "--num-samples", "10", "--num-datapoints", "20", "--no-progress"]) == 0
    assert pd.read_csv(out / "evaluation.csv")["nll"].notna().all()


def test_quadrant_run(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--conditional", "quadrants", "--visible-quadrants", "3", "--epochs", "1", "--z-dim", "3",
                 "--hidden-dims", "32", "--batch-size", "500", "--out", str(out), "--no-progress"]) == 0
    assert {p.name for p in out.iterdir()} == {"config.json", "metrics.csv", "baseline_metrics.csv", "loss_curve.png",
                                               "completions.png", "checkpoint.pt", "checkpoints"}
    model, _, config = load_pair(out)
    assert config.visible_quadrants == 3 and config.likelihood == "bce-grayscale" and config.quadrant_layout == "pyro"
    assert main(["evaluate", str(out), "--num-samples", "10", "--num-datapoints", "20", "--no-progress"]) == 0
    row = pd.read_csv(out / "evaluation.csv").iloc[0]
    assert row["baseline_nll"] > 0 and row["nll"] > 0


CONDITIONAL_ERRORS = {
    "quadrants-flag-alone": (["--visible-quadrants", "2"], "--visible-quadrants needs --conditional quadrants"),
    "layout-flag-alone": (["--quadrant-layout", "visible"], "--quadrant-layout needs --conditional quadrants"),
    "quadrants-4": (["--conditional", "quadrants", "--visible-quadrants", "4"], "invalid choice: 4"),
    "learned-prior-alone": (["--learned-prior"], "--learned-prior needs --conditional label"),
}


@pytest.mark.parametrize("args, message", list(CONDITIONAL_ERRORS.values()), ids=list(CONDITIONAL_ERRORS))
def test_conditional_bad_input(args, message, tmp_path, capsys):
    assert_usage_error(args, message, tmp_path, capsys)


def without_labels(monkeypatch) -> None:
    """``ppl-vae train`` loads its datasets without labels."""
    import ppl_vae.cli.train_command

    real = ppl_vae.cli.train_command.load_dataset

    def unlabelled(*args, **kwargs):
        data = real(*args, **kwargs)
        data.train_labels = data.test_labels = None
        data.num_classes = 0
        return data

    monkeypatch.setattr(ppl_vae.cli.train_command, "load_dataset", unlabelled)


def test_label_conditioning_needs_labels(tmp_path, capsys, monkeypatch):
    without_labels(monkeypatch)
    out = tmp_path / "run"
    assert main(["train", "--conditional", "label", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--conditional label needs a dataset with labels" in err and err.count("\n") == 1
    assert not out.exists()


def test_the_librarys_notices_are_shown_once_each_on_the_current_stderr(capsys):
    """INFO lines of the ``ppl_vae`` logger (the compiled step's promotion) reach stderr, which
    logging's last-resort handler would drop; repeated calls add no second handler."""
    show_notices()
    show_notices()
    logging.getLogger("ppl_vae").info("compile auto: promoted")
    assert capsys.readouterr().err.splitlines() == ["compile auto: promoted"]
