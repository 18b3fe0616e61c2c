"""Run directories: what ``ppl-vae train`` writes and the other commands read."""

import json
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from ppl_vae.models.config import ModelConfig
from ppl_vae.training.checkpoints import CheckpointError, atomic_write, load_pair
from ppl_vae.data.datasets import Dataset, load_dataset


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


def read_config(run_dir: Path) -> dict[str, Any]:
    """The run's ``config.json``.

    :raises RunDirError: if the directory or its config is missing or unreadable.
    """
    path = Path(run_dir) / "config.json"
    if not Path(run_dir).is_dir():
        raise RunDirError(f"run directory {run_dir} not found")
    try:
        config = json.loads(path.read_text())
        ModelConfig.from_dict(config["model"])
        return config
    except FileNotFoundError:
        raise RunDirError(f"{run_dir} is not a run directory: config.json is missing") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise RunDirError(f"{path} is not a ppl_vae run config ({type(error).__name__}: {error})") from None


def load_run(run_dir: Path, device: torch.device, data_dir: str | None = None) -> tuple[nn.Module, nn.Module, Dataset]:
    """The trained pair and its dataset, checked against each other.

    :param data_dir: overrides the data directory recorded in the run's config.
    :raises RunDirError: for a missing checkpoint or data that do not fit the model.
    """
    config = read_config(run_dir)
    if not (Path(run_dir) / "checkpoint.pt").exists():
        raise RunDirError(f"{run_dir} is not a finished run: checkpoint.pt is missing")
    model, guide, model_config = load_pair(run_dir, device)
    data = load_dataset(config["dataset"], data_dir or config.get("data_dir", "data"), device,
                        config.get("validation_size", 0))
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
    csv = Path(run_dir) / f"{name}.csv"
    table = pd.concat([pd.read_csv(csv), rows], ignore_index=True) if csv.exists() else rows
    atomic_write(csv, lambda f: f.write(table.to_csv(index=False).encode()))
    atomic_write(Path(run_dir) / f"{name}.md", lambda f: f.write((table.to_markdown(index=False) + "\n").encode()))
    return table


__all__ = ["CheckpointError", "RunDirError", "append_table", "load_run", "new_run_dir", "read_config"]
