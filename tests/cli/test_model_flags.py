"""``ppl-vae train --prior`` and ``--model hierarchical`` end to end: training, evaluation, check,
kill and resume, and their bad input."""

import json
import math

import pandas as pd
import pytest
import torch
from test_reliability import ppl_vae
from test_train_command import assert_usage_error, without_labels

from ppl_vae import load_pair
from ppl_vae.cli.main import main
from ppl_vae.priors import PRIORS

SMALL = ["--dataset", "binarized-mnist-sample", "--z-dim", "4", "--hidden-dims", "64", "--batch-size", "100",
         "--no-progress", "--quiet"]
PRIOR_FLAGS = {"standard": [], "mixture": ["--num-components", "5"], "vamp": ["--num-pseudo-inputs", "20"],
               "flow": ["--prior-flows", "2", "--prior-hidden-dims", "16"]}
HIERARCHICAL = ["--model", "hierarchical", "--z-dims", "8", "4", "--layer-widths", "32", "16",
                "--dataset", "binarized-mnist-sample", "--batch-size", "100", "--no-progress", "--quiet"]


@pytest.mark.parametrize("prior", list(PRIORS))
def test_every_prior_trains_without_nan_and_improves_the_elbo(prior, tmp_path):
    out = tmp_path / prior
    assert main(["train", *SMALL, "--prior", prior, *PRIOR_FLAGS[prior], "--epochs", "3", "--out", str(out)]) == 0
    metrics = pd.read_csv(out / "metrics.csv")
    assert metrics[["train_elbo", "test_elbo"]].map(math.isfinite).all().all()
    assert metrics["test_elbo"].iloc[-1] > metrics["test_elbo"].iloc[0] + 5  # nats: well beyond the noise
    config = json.loads((out / "config.json").read_text())["model"]
    assert config["prior"] == prior and config["model"] == "vae"
    model, _, _ = load_pair(out)
    assert type(model.z_prior).__name__ == {"standard": "StandardNormalPrior", "mixture": "MixturePrior",
                                            "vamp": "VampPrior", "flow": "FlowPrior"}[prior]


def test_hierarchical_run_evaluates_and_checks_both_layers(tmp_path, capsys):
    out = tmp_path / "two-layers"
    assert main(["train", *HIERARCHICAL, "--guide", "iaf", "--num-flows", "1", "--prior", "vamp",
                 "--num-pseudo-inputs", "10", "--epochs", "2", "--out", str(out)]) == 0
    assert main(["evaluate", str(out), "--num-samples", "20", "--num-datapoints", "30", "--no-progress"]) == 0
    row = pd.read_csv(out / "evaluation.csv").iloc[-1]
    assert (row["z1_dim"], row["z2_dim"]) == (8, 4) and row["active_units"] == row["active_units_z1"] + row["active_units_z2"]
    assert main(["check", str(out), "--num-datapoints", "10", "--num-particles", "10", "--repeats", "5",
                 "--num-samples", "100"]) == 0
    check = pd.read_csv(out / "check.csv")
    assert list(check["estimator"]) == ["Trace_ELBO"] and set(check["reference_kind"]) == {"monte-carlo"}
    assert "monte-carlo reference" in capsys.readouterr().out


SEMI_SUPERVISED = ["--conditional", "semi-supervised", "--labels", "1000", "--dataset", "mnist-sample", "--z-dim", "8",
                   "--hidden-dims", "128", "--batch-size", "100", "--lr", "1e-3", "--no-progress", "--quiet"]


def test_semi_supervised_run_learns_to_classify_and_evaluates_with_the_label_summed_out(tmp_path, capsys):
    out = tmp_path / "m2"
    assert main(["train", *SEMI_SUPERVISED, "--epochs", "3", "--out", str(out)]) == 0
    notices = [line for line in capsys.readouterr().err.splitlines() if line.startswith("compile auto:")]
    assert notices == ["compile auto: the enum ELBO has no compiled version; training uncompiled"]  # shown once
    metrics = pd.read_csv(out / "metrics.csv")
    assert metrics[["train_elbo", "test_elbo", "test_accuracy"]].map(math.isfinite).all().all()
    chance, test_size = 0.1, 2000
    assert metrics["test_accuracy"].iloc[-1] > chance + 4 * math.sqrt(chance * (1 - chance) / test_size)
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["elbo"] == "enum" and config["model"]["num_labels"] == 1000
    assert main(["evaluate", str(out), "--num-samples", "20", "--num-datapoints", "50", "--no-progress"]) == 0
    row = pd.read_csv(out / "evaluation.csv").iloc[-1]
    assert -row["nll"] >= row["elbo"] and 0 <= row["accuracy"] <= 1
    assert main(["check", str(out), "--num-datapoints", "10", "--num-particles", "10", "--repeats", "5",
                 "--num-samples", "100"]) == 0
    check = pd.read_csv(out / "check.csv")
    assert list(check["estimator"]) == ["TraceEnum_ELBO"] and list(check["reference_kind"]) == ["closed-form"]
    assert abs(check["z"].iloc[0]) < 4


@pytest.mark.slow
@pytest.mark.parametrize("flags", [["--prior", "vamp", "--num-pseudo-inputs", "10", *SMALL], HIERARCHICAL,
                                   [*SEMI_SUPERVISED[:-4], "--labels", "200", "--no-progress", "--quiet"],
                                   [*SEMI_SUPERVISED[:-4], "--labels", "20", "--labelled-every", "3", "--no-progress"]],
                         ids=["vamp", "hierarchical", "semi-supervised", "semi-supervised-cycled"])
def test_kill_and_resume_gives_the_uninterrupted_run(flags, tmp_path):
    train = ["train", *flags, "--epochs", "2", "--checkpoint-every-steps", "3"]
    ppl_vae(*train, "--out", str(tmp_path / "full"))
    killed = ppl_vae(*train, "--out", str(tmp_path / "killed"), fault="kill:13", check=False)
    assert killed.returncode == -9, killed.stderr
    ppl_vae("train", "--resume", str(tmp_path / "killed"), "--no-progress")
    (full_model, full_guide, _), (model, guide, _) = load_pair(tmp_path / "full"), load_pair(tmp_path / "killed")
    for p, q in zip([*full_model.parameters(), *full_guide.parameters()], [*model.parameters(), *guide.parameters()]):
        assert torch.equal(p, q)


BAD_INPUTS = {
    "unknown-prior": (["--prior", "gauss"], "argument --prior: invalid choice: 'gauss'"),
    "option-of-another-prior": (["--prior", "vamp", "--num-components", "3"],
                                "--num-components is not an option of the vamp prior (its options: --num-pseudo-inputs); "
                                "it belongs to the mixture prior"),
    "prior-option-without-prior": (["--prior-flows", "2"], "--prior-flows is not an option of the standard prior"),
    "zero-components": (["--prior", "mixture", "--num-components", "0"], "--num-components must be an integer of at least 1"),
    "zero-pseudo-inputs": (["--prior", "vamp", "--num-pseudo-inputs", "0"],
                           "--num-pseudo-inputs must be an integer of at least 1"),
    "zero-layer": (["--model", "hierarchical", "--z-dims", "10", "0"], "--z-dims must hold sizes of at least 1"),
    "zero-width": (["--model", "hierarchical", "--layer-widths", "10", "0"], "--layer-widths must hold sizes of at least 1"),
    "widths-and-layers": (["--model", "hierarchical", "--layer-widths", "10"], "--layer-widths gives 1 widths for 2"),
    "unknown-layer-guide": (["--model", "hierarchical", "--layer-guides", "iaf", "nope"], "--layer-guides names 'nope'"),
    "z-dim-on-hierarchical": (["--model", "hierarchical", "--z-dim", "3"], "--z-dim is not an option of --model hierarchical"),
    "hierarchical-flag-on-vae": (["--z-dims", "10", "5"], "--z-dims needs --model hierarchical"),
    "hierarchical-mean-field": (["--model", "hierarchical", "--elbo", "mean-field"],
                                "--elbo mean-field does not fit --model hierarchical (the guide's layers depend"),
    "too-many-labels": (["--conditional", "semi-supervised", "--labels", "20000"],
                        "--labels must be between the 10 classes and the 10000 training images of 'mnist-sample'"),
    "too-few-labels": (["--conditional", "semi-supervised", "--labels", "5"], "--labels must be between the 10 classes"),
    "labels-without-model": (["--labels", "100"], "--labels needs --conditional semi-supervised"),
    "labelled-every-one": (["--conditional", "semi-supervised", "--labelled-every", "1"],
                           "--labelled-every must be 0 (each labelled image once per epoch) or at least 2"),
    "labelled-every-without-model": (["--labelled-every", "4"], "--labelled-every needs --conditional semi-supervised"),
    "semi-supervised-trace": (["--conditional", "semi-supervised", "--elbo", "trace"],
                              "--elbo trace does not fit --model semi-supervised; choose from enum"),
    "semi-supervised-jit": (["--conditional", "semi-supervised", "--jit"],
                            "--compile fx cannot compile the enum ELBO; compile one of trace, mean-field, iwae"),
    "vamp-on-label": (["--conditional", "label", "--prior", "vamp"], "the label model does not take"),
    "learned-and-mixture": (["--conditional", "label", "--learned-prior", "--prior", "mixture"],
                            "--learned-prior learns p(z|y) per class; it does not combine with --prior mixture"),
    "hierarchical-and-label": (["--model", "hierarchical", "--conditional", "label"],
                               "--conditional label does not combine with --model hierarchical"),
}


@pytest.mark.parametrize("args, message", list(BAD_INPUTS.values()), ids=list(BAD_INPUTS))
def test_bad_prior_and_model_input(args, message, tmp_path, capsys):
    assert_usage_error(args, message, tmp_path, capsys)


def test_semi_supervised_needs_labels(tmp_path, capsys, monkeypatch):
    without_labels(monkeypatch)
    assert_usage_error(["--conditional", "semi-supervised"], "--conditional semi-supervised needs a dataset with labels",
                       tmp_path, capsys)
