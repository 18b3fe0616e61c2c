"""The RNG states a training checkpoint needs, as data (no pickled objects)."""

import json
import random

import numpy as np
import torch


def rng_state() -> dict:
    """Python's, NumPy's and torch's (CPU and CUDA) RNG states, as data."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": json.dumps([version, list(internal), gauss]),
        "numpy": json.dumps([name, keys.tolist(), pos, has_gauss, cached]),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict) -> None:
    version, internal, gauss = json.loads(state["python"])
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = json.loads(state["numpy"])
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
