"""Run directories: what ``ppl-vae train`` writes and the other commands read."""

import json
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from ppl_vae.data import DATASETS, Dataset, load_dataset, semi_supervised
from ppl_vae.models.config import ModelConfig
from ppl_vae.models.registry import MODELS
from ppl_vae.training.checkpoints import CheckpointError, atomic_write, load_pair
from ppl_vae.training.config import CheckpointOptions, TrainConfig


class RunDirError(ValueError):
    """A run directory is missing, unfinished or inconsistent."""


def new_run_dir(out: Path | None, dataset: str, guide: str) -> Path:
    """Create an empty run directory (default ``results/runs/<time>-<dataset>-<guide>``).

    :raises RunDirError: if it exists and is not empty, or cannot be created.
    """
    if out is None:
        out = Path("results/runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{dataset}-{guide}"
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise RunDirError(f"output directory {out} already exists and is not empty; choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RunDirError(f"cannot create output directory {out}: {error.strerror}") from None
    return out


def run_file(run_dir: Path, name: str) -> Path:
    """The path of a file of the run directory, refusing a symbolic link (ppl-vae writes none).

    :raises RunDirError: naming the file.
    """
    path = Path(run_dir) / name
    if path.is_symlink():
        raise RunDirError(f"{path} is a symbolic link; a run directory holds only the files ppl-vae wrote")
    return path


def read_config(run_dir: Path) -> dict[str, Any]:
    """The run's ``config.json``, every setting in it validated as if it came from flags.

    :raises RunDirError: naming the file and the problem, if the directory or its config is
        missing, unreadable, or holds a setting of the wrong type or out of range.
    """
    if not Path(run_dir).is_dir():
        raise RunDirError(f"run directory {run_dir} not found")
    path = run_file(run_dir, "config.json")
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise RunDirError(f"{run_dir} is not a run directory: config.json is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RunDirError(f"{path} is not a ppl_vae run config ({type(error).__name__}: {error})") from None
    run_configs(run_dir, config, need_train=False)
    return config


def run_configs(run_dir: Path, config: Any, need_train: bool = True) -> tuple[ModelConfig, TrainConfig,
                                                                           CheckpointOptions]:
    """The configs a run's ``config.json`` records, validated as if built from flags.

    :param need_train: the training settings must be there (to resume; evaluating needs only
        the dataset and the model).
    :raises RunDirError: naming the file and the problem.
    """
    path = Path(run_dir) / "config.json"
    try:
        if not isinstance(config, dict):
            raise TypeError(f"expected a mapping, got {type(config).__name__}")
        for key, kind in (("dataset", str), ("data_dir", str), ("validation_size", int), ("model", dict),
                          ("train", dict), ("checkpoints", dict)):
            if key in config and not isinstance(config[key], kind):
                raise TypeError(f"{key} must be a {kind.__name__}, got {config[key]!r}")
        if config["dataset"] not in DATASETS:
            raise ValueError(f"unknown dataset {config['dataset']!r}")
        if config.get("validation_size", 0) < 0:
            raise ValueError(f"validation_size must be at least 0, got {config['validation_size']}")
        train = config["train"] if need_train or "train" in config else {}
        return (ModelConfig.from_dict(config["model"]), TrainConfig(**train),
                CheckpointOptions(**config.get("checkpoints", {})))
    except KeyError as error:
        raise RunDirError(f"{path} is not a ppl_vae run config: the key {error} is missing") from None
    except (TypeError, ValueError) as error:
        raise RunDirError(f"{path} is not a ppl_vae run config: {error}") from None


def labelled_data(data: Dataset, config: ModelConfig, seed: int) -> Dataset:
    """The dataset as the model trains on it: with the labels of ``config.num_labels`` training
    images only, drawn with the run's seed, for a model that asks for a labelled subset."""
    if not MODELS[config.model].labelled_subset:
        return data
    return semi_supervised(data, config.num_labels, seed, config.labelled_every)


def load_run(run_dir: Path, device: torch.device, data_dir: str | None = None) -> tuple[nn.Module, nn.Module, Dataset]:
    """The trained pair and its dataset, checked against each other.

    :param data_dir: overrides the data directory recorded in the run's config.
    :raises RunDirError: for a missing checkpoint or data that do not fit the model.
    """
    config = read_config(run_dir)
    if not run_file(run_dir, "checkpoint.pt").exists():
        raise RunDirError(f"{run_dir} is not a finished run: checkpoint.pt is missing")
    model, guide, model_config = load_pair(run_dir, device)
    if model_config != ModelConfig.from_dict(config["model"]):
        raise RunDirError(f"{Path(run_dir) / 'config.json'} describes another model than its checkpoint.pt holds; "
                          "the run directory was changed after training")
    data = load_dataset(config["dataset"], data_dir or config.get("data_dir", "data"), device,
                        config.get("validation_size", 0))
    data = labelled_data(data, model_config, config.get("train", {}).get("seed", 0))
    if data.event_shape != tuple(model_config.event_shape):
        raise RunDirError(
            f"dataset {config['dataset']!r} has datapoints of shape {data.event_shape} "
            f"but the model expects {tuple(model_config.event_shape)}"
        )
    return model.eval(), guide.eval(), data


def append_table(run_dir: Path, name: str, rows: pd.DataFrame) -> pd.DataFrame:
    """Append rows to ``<name>.csv`` and rewrite ``<name>.md`` from it, both atomically.

    Earlier rows are kept: evaluating again never loses an earlier result.
    """
    csv = run_file(run_dir, f"{name}.csv")
    table = pd.concat([read_table(csv), rows], ignore_index=True) if csv.exists() else rows
    atomic_write(csv, lambda f: f.write(table.to_csv(index=False).encode()))
    atomic_write(Path(run_dir) / f"{name}.md", lambda f: f.write((table.to_markdown(index=False) + "\n").encode()))
    return table


def read_table(path: Path) -> pd.DataFrame:
    """A table ppl-vae wrote (``evaluation.csv``, ``check.csv``), read back.

    :raises RunDirError: naming the file, if it is not such a table; it is left as it is.
    """
    try:
        table = pd.read_csv(path)
    except (OSError, UnicodeDecodeError, ValueError, pd.errors.ParserError) as error:
        reason = str(error).strip().splitlines()[0][:120] if str(error).strip() else type(error).__name__
        raise RunDirError(f"{path} is not a table ppl-vae wrote ({reason}); move it away to start a new one") from None
    if "num_datapoints" not in table.columns:
        raise RunDirError(f"{path} is not a table ppl-vae wrote (no num_datapoints column); move it away to start a "
                          "new one")
    return table


__all__ = ["CheckpointError", "RunDirError", "append_table", "load_run", "new_run_dir", "read_config"]
