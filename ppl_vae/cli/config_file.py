"""``ppl-vae train --config FILE``: settings from a TOML, YAML or JSON file; flags override them.

A file has the shape of a run directory's ``config.json``, so every run's ``config.json`` is
itself a valid ``--config`` (training from it reproduces the run)::

    dataset = "binarized-mnist"
    validation_size = 10000

    [model]
    z_dim = 50
    hidden_dims = [200, 200]
    guide = "iaf"
    guide_options = { num_flows = 8 }

    [train]
    epochs = 100
    elbo = "iwae"
    num_particles = 5

    [checkpoints]
    every_seconds = 300

Flag names (``z_dim = 50``, ``keep_checkpoints = 3``) are accepted at the top level too.
:data:`FLAGS` maps each flag of ``ppl-vae train`` to its place in the file; the settings
themselves are validated by the configs they build (:class:`~ppl_vae.models.config.ModelConfig`,
:class:`~ppl_vae.training.config.TrainConfig`, :class:`~ppl_vae.training.config.CheckpointOptions`).
"""

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import tomllib
import yaml

from ppl_vae.cli.arguments import UsageError
from ppl_vae.training.config import CheckpointOptions, TrainConfig

GUIDE_OPTIONS, PRIOR_OPTIONS = "model.guide_options", "model.prior_options"
# each flag's destination -> (section of the file, key in that section); "" is the top level
#: Each flag's destination -> (section of the file, key in that section).
FLAGS: dict[str, tuple[str, str]] = {
    "dataset": ("", "dataset"), "data_dir": ("", "data_dir"), "validation_size": ("", "validation_size"),
    "device": ("", "device"), "init_from": ("init_from", "path"), "tensorboard": ("", "tensorboard"),
    **{name: ("model", name) for name in ("network", "hidden_dims", "activation", "z_dim", "likelihood", "guide",
                                          "model", "conditional", "learned_prior", "visible_quadrants",
                                          "quadrant_layout", "prior", "z_dims", "layer_widths", "layer_guides",
                                          "labelled_every", "aux_loss_multiplier")},
    "labels": ("model", "num_labels"),
    "num_flows": (GUIDE_OPTIONS, "num_flows"), "flow_hidden_dims": (GUIDE_OPTIONS, "hidden_dims"),
    "context_dim": (GUIDE_OPTIONS, "context_dim"), "stable": (GUIDE_OPTIONS, "stable"),
    "permutation": (GUIDE_OPTIONS, "permutation"),
    "num_components": (PRIOR_OPTIONS, "num_components"), "num_pseudo_inputs": (PRIOR_OPTIONS, "num_pseudo_inputs"),
    "prior_flows": (PRIOR_OPTIONS, "num_flows"), "prior_hidden_dims": (PRIOR_OPTIONS, "hidden_dims"),
    **{f.name: ("train", f.name) for f in fields(TrainConfig)}, "jit": ("train", "jit"),
    **{("checkpoint_" + f.name if f.name.startswith("every") else "keep_checkpoints" if f.name == "keep" else f.name):
       ("checkpoints", f.name) for f in fields(CheckpointOptions)},
}
# what a run's config.json records besides its settings: facts derived from the data or the run
RECORDED = {"model.event_shape", "model.num_classes", "distributed", "epochs_changed", "init_from.epoch"}
PLACES = {place: flag for flag, place in FLAGS.items()}
READERS = {".toml": lambda text: tomllib.loads(text), ".yaml": yaml.safe_load, ".yml": yaml.safe_load,
           ".json": json.loads}


def flag_of(section: str, key: str) -> str:
    """The ``--flag`` of a setting, for messages."""
    return "--" + PLACES.get((section, key), key).replace("_", "-")


def flag_of_field(field: str) -> str:
    """The ``--flag`` of a config field (the model's ``hidden_dims`` rather than a guide option's);
    ``prior_options.num_flows`` names an option of the prior."""
    if "." in field:
        options, key = field.split(".", 1)
        return flag_of(f"model.{options}", key)
    section = next((where for where, key in FLAGS.values() if key == field), "")
    return flag_of(section, field)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The settings of a config file, by flag destination.

    :raises UsageError: naming the file, if it is missing, unreadable, of an unknown format,
        not a mapping, or holds a key that is no setting.
    """
    path = Path(path)
    if path.suffix.lower() not in READERS:
        raise UsageError(f"--config {path}: unknown format {path.suffix or '(none)'!r}; use .toml, .yaml or .json")
    try:
        values = READERS[path.suffix.lower()](path.read_text())
    except OSError as error:
        raise UsageError(f"--config {path}: cannot read it: {error.strerror or error}") from None
    except (ValueError, yaml.YAMLError) as error:  # tomllib's, json's and yaml's parse errors
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UsageError(f"--config {path}: not valid {path.suffix[1:].upper()}: {reason}") from None
    if not isinstance(values, dict):
        raise UsageError(f"--config {path}: expected a mapping of settings, got {type(values).__name__}")
    settings: dict[str, Any] = {}
    _collect(path, "", values, settings)
    return settings


def _collect(path: Path, section: str, values: dict, settings: dict[str, Any]) -> None:
    for key, value in values.items():
        where = f"{section}.{key}" if section else str(key)
        if where in RECORDED:
            continue
        if (section, key) in PLACES:
            settings[PLACES[section, key]] = tuple(value) if isinstance(value, list) else value
        elif isinstance(value, dict) and any(s == where or s.startswith(where + ".") for s, _ in FLAGS.values()):
            _collect(path, where, value, settings)  # a section ([model] rather than the flag model = "...")
        elif not section and key in FLAGS:  # a flag's name at the top level
            settings[key] = tuple(value) if isinstance(value, list) else value
        else:
            raise UsageError(f"--config {path}: unknown setting {where!r}; the settings are the flags of "
                             "'ppl-vae train' and the keys of a run's config.json")
