import json
import shutil

import pandas as pd
import pytest

from ppl_vae import ModelConfig, build_pair, save_checkpoint
from ppl_vae.cli.main import main


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "run"
    assert main(["train", "--dataset", "binarized-mnist-sample", "--epochs", "1", "--z-dim", "4",
                 "--hidden-dims", "64", "--out", str(out), "--no-progress"]) == 0
    return out


def copy_run(run_dir, tmp_path):
    target = tmp_path / "run"
    shutil.copytree(run_dir, target)
    return target


def test_evaluate_appends_rows(run_dir, tmp_path, capsys):
    run = copy_run(run_dir, tmp_path)
    args = ["evaluate", str(run), "--num-samples", "20", "--num-datapoints", "30", "--no-progress"]
    assert main(args) == 0
    assert main(args + ["--seed", "1"]) == 0
    table = pd.read_csv(run / "evaluation.csv")
    assert len(table) == 2 and table["num_samples"].tolist() == [20, 20]
    assert (table["nll"] > 0).all() and (table["active_units"] <= 4).all()
    markdown = (run / "evaluation.md").read_text().splitlines()
    assert len(markdown) == 4 and "nll" in markdown[0]  # header, rule, two rows
    assert "NLL" in capsys.readouterr().out


def test_check_reports_agreement(run_dir, tmp_path, capsys):
    run = copy_run(run_dir, tmp_path)
    assert main(["check", str(run), "--num-datapoints", "20", "--num-particles", "50", "--repeats", "10",
                 "--num-samples", "500"]) == 0
    table = pd.read_csv(run / "check.csv")
    assert table["estimator"].tolist() == ["Trace_ELBO", "TraceMeanField_ELBO"]
    assert (table["z"].abs() < 4).all()
    assert "agrees" in capsys.readouterr().out


def make_mismatched_run(tmp_path):
    run = tmp_path / "mismatch"
    run.mkdir()
    config = ModelConfig(event_shape=(1, 14, 14), z_dim=2, hidden_dims=(8,))
    save_checkpoint(run / "checkpoint.pt", *build_pair(config), config)
    (run / "config.json").write_text(json.dumps({"dataset": "mnist-sample", "model": config.to_dict()}))
    return run


@pytest.mark.parametrize(
    "case, extra, message",
    [
        ("k", ["--num-samples", "0"], "must be at least 1"),
        ("chunk", ["--chunk-size", "0"], "must be at least 1"),
        ("missing-dir", None, "not found"),
        ("no-checkpoint", None, "checkpoint.pt is missing"),
        ("foreign-checkpoint", None, "not a ppl_vae checkpoint"),
        ("shape", None, "has datapoints of shape (1, 28, 28) but the model expects (1, 14, 14)"),
    ],
)
def test_bad_input(case, extra, message, run_dir, tmp_path, capsys):
    run = copy_run(run_dir, tmp_path)
    if case == "missing-dir":
        run = tmp_path / "nothing"
    elif case == "no-checkpoint":
        (run / "checkpoint.pt").unlink()
    elif case == "foreign-checkpoint":
        import torch

        torch.save({"format": "other/9"}, run / "checkpoint.pt")
    elif case == "shape":
        run = make_mismatched_run(tmp_path)
    for command in ("evaluate",) if case == "chunk" else ("evaluate", "check"):
        with pytest.raises(SystemExit) as exit_info:
            raise SystemExit(main([command, str(run), *(extra or [])]))
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
