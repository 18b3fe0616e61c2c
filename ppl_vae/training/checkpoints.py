"""Checkpoints: tensors and JSON config only, written atomically, loaded with ``weights_only=True``.

A checkpoint is a ``torch.save`` file of a dict holding the format tag, the model
config as a JSON string and the state_dicts. Loading uses ``torch.load(...,
weights_only=True)``, which refuses pickled code, so opening a checkpoint never runs
anything it carries.
"""

import io
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ppl_vae.models.config import ModelConfig, build_pair

FORMAT = "ppl_vae/1"


class CheckpointError(ValueError):
    """A checkpoint is missing, truncated, corrupted, unsafe or from another format."""


TMP_SUFFIX = ".ppl-vae.tmp"  # the temporary files of atomic writes: ".<name>.<random>.ppl-vae.tmp"


def atomic_write(path: str | Path, write) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, fsync it, then ``os.replace``.

    A crash or a full disk leaves any previous file at ``path`` intact, and a failed write
    removes its temporary file (a killed process leaves one, which
    :func:`remove_stale_temporaries` clears).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(path: str | Path, model: nn.Module, guide: nn.Module, config: ModelConfig, **extra: Any) -> None:
    """Write model and guide state_dicts and the config to ``path`` atomically.

    :param extra: further tensors or JSON-able values (epoch, metrics, ...).
    """
    payload = {
        "format": FORMAT,
        "config": json.dumps(config.to_dict()),
        "model": model.state_dict(),
        "guide": guide.state_dict(),
        "extra": json.dumps(extra),
    }
    atomic_save(path, payload)


def atomic_save(path: str | Path, payload: Any) -> None:
    """``torch.save(payload)`` to ``path`` atomically.

    The payload is serialized in memory first and then written as bytes, so that a full
    disk is the ``OSError`` it is (``torch.save`` on a file turns it into a ``RuntimeError``).
    """
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write(path, lambda f: f.write(buffer.getbuffer()))


def remove_stale_temporaries(directory: str | Path) -> list[Path]:
    """Delete the temporary files that killed atomic writes left in ``directory``.

    Call it only while holding the directory's lock (:class:`ppl_vae.cli.run_lock.RunLock`), so that
    no other process is writing there. :returns: the files removed.
    """
    stale = sorted(Path(directory).glob(f".*{TMP_SUFFIX}")) if Path(directory).is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`, refusing anything but data.

    :raises CheckpointError: naming the file, if it is missing, unsafe, corrupted or foreign.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"cannot load checkpoint {path}: {reason[:200]}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a ppl_vae checkpoint of format {FORMAT}")
    try:
        payload["config"] = ModelConfig.from_dict(json.loads(payload["config"]))
        payload["extra"] = json.loads(payload.get("extra", "{}"))
        if not all(isinstance(payload.get(key), dict) for key in ("model", "guide")):
            raise TypeError("its model and guide states are missing")
    except KeyError as error:
        raise CheckpointError(f"{path} is not a ppl_vae checkpoint: the key {error} is missing") from None
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{path} is not a ppl_vae checkpoint: {error}") from None
    return payload


def load_pair(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, nn.Module, ModelConfig]:
    """Rebuild the trained ``(model, guide, config)`` from a checkpoint file or a run directory.

    :param path: a checkpoint file, or a run directory holding ``checkpoint.pt``.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    payload = load_checkpoint(path, map_location=device)
    model, guide = build_pair(payload["config"])
    load_weights(path, payload, model, guide)
    return model.to(device), guide.to(device), payload["config"]


def load_weights(path: Path, payload: dict[str, Any], model: nn.Module, guide: nn.Module) -> None:
    """Load a checkpoint's state dicts into ``model`` and ``guide``, or name the file that does not fit."""
    try:
        model.load_state_dict(payload["model"])
        guide.load_state_dict(payload["guide"])
    except (RuntimeError, KeyError, TypeError, ValueError, AttributeError) as error:
        raise CheckpointError(f"{path} does not match its config: {str(error).splitlines()[0]}") from None


def config_differences(theirs: dict[str, Any], ours: dict[str, Any]) -> list[str]:
    """``"<key> <their value> (asked: <our value>)"`` for each setting of ``ours`` that ``theirs`` differs in
    (both as ``to_dict()`` gives them)."""
    return [f"{key} {theirs.get(key)!r} (asked: {ours[key]!r})" for key in ours if theirs.get(key) != ours[key]]


def warm_start(path: str | Path, model: nn.Module, guide: nn.Module, config: ModelConfig) -> dict[str, Any]:
    """Copy a finished run's weights into a new ``(model, guide)`` of the same architecture.

    For going on with a trained pair under other training settings (a longer run, another
    objective, another learning rate); the optimizer starts afresh.

    :param path: a checkpoint file, or a run directory holding ``checkpoint.pt``.
    :returns: where the weights came from: ``{"path": ..., "epoch": ...}``, for the run's config.
    :raises CheckpointError: if the checkpoint cannot be read or its model differs from ``config``.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    payload = load_checkpoint(path, map_location=next(model.parameters()).device)
    differing = config_differences(payload["config"].to_dict(), config.to_dict())
    if differing:
        raise CheckpointError(f"{path} holds another model: {'; '.join(differing)}")
    load_weights(path, payload, model, guide)
    return {"path": str(path), "epoch": payload["extra"].get("epoch")}


TRAIN_FORMAT = "ppl_vae/train-1"  # the format tag of training checkpoints (ppl_vae.training.trainer)


def latest_checkpoint(checkpoint_dir: Path, map_location="cpu",
                      load: Callable[[dict], None] = lambda state: None) -> tuple[dict, Path, list[str]]:
    """The newest training checkpoint that loads, newest first; broken ones are passed over.

    :param load: puts a state into the trainer; a state it cannot take (a foreign shape, a
        missing key) is passed over like a truncated file, and the next one is tried.
    :returns: ``(state, path, problems)`` where ``problems`` names the files passed over.
    :raises CheckpointError: if no checkpoint loads.
    """
    problems = []
    for path in sorted(Path(checkpoint_dir).glob("train-*.pt"), reverse=True):
        try:
            if path.is_symlink():
                raise CheckpointError("a symbolic link")
            state = torch.load(path, map_location=map_location, weights_only=True)
            if not (isinstance(state, dict) and state.get("format") == TRAIN_FORMAT):
                raise CheckpointError("not a ppl_vae training checkpoint")
            load(state)
            return state, path, problems
        except Exception as error:  # noqa: BLE001 - any unreadable or unfitting file is passed over
            reason = str(error).strip().splitlines()[0][:120] if str(error).strip() else type(error).__name__
            problems.append(f"{path.name}: {reason}")
    detail = f" ({'; '.join(problems)})" if problems else ""
    raise CheckpointError(f"no loadable training checkpoint in {checkpoint_dir}{detail}")
