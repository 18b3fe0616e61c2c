"""``ppl-vae train --config FILE``: TOML, YAML and JSON files, flags over files, runs reproduced."""

import json
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from ppl_vae.cli import main, make_parser
from ppl_vae.cli.config_file import read_config_file
from ppl_vae.cli.train_command import given
from ppl_vae.models.config import ModelConfig
from ppl_vae.training.config import CheckpointOptions, TrainConfig

ROOT = Path(__file__).parents[2]
TINY = ["--epochs", "2", "--hidden-dims", "8", "--z-dim", "2", "--batch-size", "250", "--no-progress"]


def configs_of(path: Path) -> tuple[dict, TrainConfig, CheckpointOptions]:
    """What ``ppl-vae train --config path`` would build, without training."""
    parser = make_parser()
    parser.train_parser.set_defaults(**read_config_file(path))
    args = parser.parse_args(["train", "--config", str(path)])
    model = given(args, "model")
    model.pop("likelihood") if model.get("likelihood") == "auto" else None  # the flag's default: chosen from the data
    options = given(args, "model.guide_options")
    if options:
        model["guide_options"] = {key: tuple(v) if isinstance(v, list) else v for key, v in options.items()}
    return model, TrainConfig(**given(args, "train")), CheckpointOptions(**given(args, "checkpoints"))


def test_a_runs_config_json_reproduces_the_run(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    assert main(["train", *TINY, "--guide", "iaf", "--num-flows", "1", "--seed", "3", "--out", str(first)]) == 0
    assert main(["train", "--config", str(first / "config.json"), "--out", str(second), "--no-progress"]) == 0
    a, b = (pd.read_csv(run / "metrics.csv").drop(columns="seconds") for run in (first, second))
    pd.testing.assert_frame_equal(a, b)
    ca, cb = (json.loads((run / "config.json").read_text()) for run in (first, second))
    assert ca == cb


def test_toml_file_with_flags_overriding_it(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text('dataset = "binarized-mnist-sample"\n\n[model]\nz_dim = 3\nhidden_dims = [16]\nguide = "iaf"\n'
                    'guide_options = { num_flows = 2 }\n\n[train]\nepochs = 1\nbatch_size = 500\nlr = 2e-3\n\n'
                    '[checkpoints]\nkeep = 3\n')
    out = tmp_path / "run"
    assert main(["train", "--config", str(path), "--lr", "5e-3", "--out", str(out), "--no-progress"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["dataset"] == "binarized-mnist-sample"
    assert config["model"]["z_dim"] == 3 and config["model"]["hidden_dims"] == [16]
    assert config["model"]["guide_options"] == {"num_flows": 2}
    assert config["train"]["lr"] == 5e-3 and config["train"]["epochs"] == 1  # the flag wins over the file
    assert config["checkpoints"]["keep"] == 3 and config["checkpoints"]["every_seconds"] == 600.0


def test_yaml_file_with_flag_names_at_the_top(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("z_dim: 4\nhidden_dims: [8, 8]\nkeep_checkpoints: 1\njit: true\nepochs: 3\n")
    model, train, checkpoints = configs_of(path)
    assert model == {"z_dim": 4, "hidden_dims": (8, 8)}
    assert train == TrainConfig(epochs=3, jit=True) and checkpoints == CheckpointOptions(keep=1)


@pytest.mark.parametrize("name, text, message", [
    ("missing.toml", None, "cannot read it"),
    ("run.ini", "z_dim = 2", "unknown format '.ini'; use .toml, .yaml or .json"),
    ("run.toml", "z_dim = ", "not valid TOML"),
    ("run.toml", "[model]\nz_size = 2\n", "unknown setting 'model.z_size'"),
    ("run.yaml", "- 1\n- 2\n", "expected a mapping of settings, got list"),
    ("run.yaml", "z_dim: many\n", "argument --z-dim: invalid int value: 'many'"),
    ("run.json", '{"train": {"lr": -1}}', "--lr must be positive and finite, got -1"),
], ids=["missing", "format", "syntax", "unknown-key", "not-a-mapping", "wrong-type", "out-of-range"])
def test_a_bad_config_file_is_one_line_exit_2_and_no_run_dir(tmp_path, capsys, name, text, message) -> None:
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        sys.exit(main(["train", "--config", str(path), "--out", str(out), "--no-progress"]))
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1 and message in err, err
    assert "Traceback" not in err and not out.exists()


RESULT_CONFIGS = sorted((ROOT / "results").rglob("config.json"))


@pytest.mark.parametrize("path", RESULT_CONFIGS, ids=lambda p: str(p.relative_to(ROOT / "results")))
def test_every_config_under_results_is_a_valid_config_file(path: Path) -> None:
    model, train, _ = configs_of(path)
    recorded = json.loads(path.read_text())
    assert train == TrainConfig(**recorded["train"])  # older runs lack newer fields: their defaults apply
    rebuilt = ModelConfig(event_shape=tuple(recorded["model"]["event_shape"]),
                          num_classes=recorded["model"].get("num_classes", 0), **model)
    assert rebuilt == ModelConfig.from_dict(recorded["model"])


def test_legacy_run_configs_are_valid_config_files() -> None:
    for run in ("finished", "label", "quadrants", "unfinished"):
        model, train, checkpoints = configs_of(ROOT / "tests" / "fixtures" / "legacy_runs" / run / "config.json")
        assert model["z_dim"] == 2 and train.batch_size == 250
    torch.testing.assert_close(checkpoints.every_steps, 1)
