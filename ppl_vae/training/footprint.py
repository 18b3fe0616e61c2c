"""What a training step will need in memory, estimated before anything runs or is written.

A run whose batch and particles cannot fit is refused with the estimate, rather than dying
in the allocator (or the operating system's out-of-memory killer) part-way through.
"""

import math
import os

import torch
from torch import nn

from ppl_vae.models.config import ConfigError, ModelConfig
from ppl_vae.training.config import TrainConfig

FLOAT_BYTES = 4


def step_bytes(model: nn.Module, guide: nn.Module, config: ModelConfig, train: TrainConfig) -> int:
    """A generous estimate of one training step's memory in bytes.

    Parameters with their gradients and Adam's two moments, plus, per (datapoint, particle)
    pair, the activations of encoder and decoder and the likelihood's temporaries, kept for
    the backward pass.
    """
    parameters = sum(p.numel() for p in [*model.parameters(), *guide.parameters()])
    flows = int(config.guide_options.get("num_flows", 0) or 0)
    per_pair = 2 * sum(config.hidden_dims) + 4 * math.prod(config.event_shape) + 4 * config.z_dim * (1 + flows)
    pairs = train.batch_size * train.num_particles
    return FLOAT_BYTES * (4 * parameters + 2 * pairs * per_pair)


def pass_bytes(pairs: int, datapoint_size: int) -> int:
    """A generous estimate of one evaluation pass's memory in bytes: the decoder's output and
    the likelihood's temporaries for ``pairs`` (datapoint, sample) pairs of ``datapoint_size`` values."""
    return 8 * FLOAT_BYTES * pairs * datapoint_size


def available_bytes(device: torch.device) -> int:
    """The memory of the device: the GPU's free memory, or the machine's physical memory."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_fits(model: nn.Module, guide: nn.Module, config: ModelConfig, train: TrainConfig,
               device: torch.device) -> None:
    """Refuse a training step that cannot fit in the device's memory.

    :raises ConfigError: naming ``num_particles`` and ``batch_size``, with the estimate.
    """
    need, have = step_bytes(model, guide, config, train), available_bytes(device)
    if need > have:
        raise ConfigError("num_particles", f"{train.num_particles} with {{batch_size}} {train.batch_size} needs about "
                          f"{need / 2**30:,.1f} GiB for one step, more than the {have / 2**30:,.1f} GiB of {device}")
