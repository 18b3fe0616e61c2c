"""Data-parallel training on torch.distributed, as launched by ``torchrun``.

Each rank holds the whole model/guide pair and takes a disjoint, contiguous shard of every
global batch. The objective stays Pyro's: each rank computes Trace_ELBO's differentiable
loss on its shard, and the gradients (with the loss and a stop flag) are summed across
ranks with one ``all_reduce`` per step. Trace_ELBO sums over the ``"data"`` plate, so the
summed gradient is exactly the gradient of the global batch's loss: the step a single
process takes on the global batch. (DistributedDataParallel would need the networks to be
called through its wrapper inside the Pyro program; an all-reduce of the gradients leaves
the program untouched.)

Ranks start with the same seed, so they draw the same random numbers: each rank binarizes
and draws the reparameterization noise of the *whole* global batch and keeps its own rows
(:class:`ppl_vae.infer.noise.ShardedNoise`). Together the ranks therefore use exactly the draws
of a single-process run, their RNG states stay identical, and rank 0's checkpoint resumes
every rank. Evaluation is sharded the same way and its sums reduced.

The backend is NCCL when training on CUDA (each rank on ``cuda:LOCAL_RANK``) and Gloo on
the CPU. Collectives time out (``PPL_VAE_DIST_TIMEOUT`` seconds, default 300): a rank that
dies makes the others fail with :class:`DistributedError` instead of hanging.
"""

import os
import time
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

from ppl_vae.infer.noise import ShardedNoise

DEFAULT_TIMEOUT_S = 300.0


class DistributedError(RuntimeError):
    """Another rank died, stalled or disagreed; this rank cannot go on."""


@dataclass
class Distributed:
    """This process's place in a data-parallel group.

    :param rank: the global rank.
    :param world_size: the number of processes.
    :param device: this rank's device.
    :param backend: ``"gloo"`` or ``"nccl"``.
    """

    rank: int
    world_size: int
    device: torch.device
    backend: str
    seconds_in_collectives: float = 0.0  # wall time spent waiting in collectives (for benchmarks)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        """Whether there is more than this process."""
        return self.world_size > 1

    def shard_bounds(self, size: int) -> tuple[int, int]:
        """``(start, length)`` of this rank's contiguous share of ``size`` items (sizes differ by at most one)."""
        base, extra = divmod(size, self.world_size)
        start = self.rank * base + min(self.rank, extra)
        return start, base + (self.rank < extra)

    def shard(self, *tensors: torch.Tensor | None) -> list[torch.Tensor | None]:
        """This rank's rows of each tensor (None stays None)."""
        start, length = self.shard_bounds(len(next(t for t in tensors if t is not None)))
        return [None if t is None else t[start:start + length] for t in tensors]

    def _collective(self, fn, *args):
        start = time.perf_counter()
        try:
            return fn(*args)
        except (RuntimeError, dist.DistBackendError) as error:
            first = str(error).strip().splitlines()[0][:160] if str(error).strip() else type(error).__name__
            raise DistributedError(f"rank {self.rank}: lost contact with another rank, which died or stalled "
                                   f"({first})") from None
        finally:
            self.seconds_in_collectives += time.perf_counter() - start

    def all_reduce_sum_(self, tensors: list[torch.Tensor]) -> None:
        """Sum ``tensors`` over all ranks, in place, with one collective."""
        if not tensors:
            return
        flat = torch.cat([t.reshape(-1) for t in tensors])
        self._collective(dist.all_reduce, flat)
        offset = 0
        for t in tensors:
            t.copy_(flat[offset:offset + t.numel()].view_as(t))
            offset += t.numel()

    def sum_scalars(self, *values: float) -> list[float]:
        """Sum a few numbers over all ranks."""
        buffer = torch.tensor(values, dtype=torch.float64, device=self.device)
        self._collective(dist.all_reduce, buffer)
        return buffer.tolist()

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` is true on any rank."""
        return self.sum_scalars(float(flag))[0] > 0

    def gather_rows(self, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        """Concatenate every rank's ``tensors`` along the first dimension, in rank order (on every rank)."""
        gathered = [None] * self.world_size
        self._collective(dist.all_gather_object, gathered, [t.cpu() for t in tensors])
        return [torch.cat([part[i] for part in gathered]).to(tensors[i].device) for i in range(len(tensors))]

    def broadcast_object(self, value):
        """Rank 0's ``value`` on every rank."""
        box = [value]
        self._collective(dist.broadcast_object_list, box, 0)
        return box[0]

    def broadcast_module_(self, module: nn.Module) -> None:
        """Make every rank's parameters and buffers rank 0's."""
        for tensor in [*module.parameters(), *module.buffers()]:
            self._collective(dist.broadcast, tensor.data, 0)

    def shard_batch(self, x: torch.Tensor, labels: torch.Tensor | None):
        """This rank's rows of a global batch and the noise context that goes with them.

        :returns: ``(x, labels, noise)``: this rank's rows and a :class:`~ppl_vae.infer.noise.ShardedNoise`
            that draws the global batch's noise and keeps this rank's rows.
        """
        size = len(x)
        x, labels = self.shard(x, labels)
        return x, labels, ShardedNoise(size, *self.shard_bounds(size))

    def on_main(self, fn):
        """Call ``fn`` on rank 0 only (e.g. to create the run directory) and give every rank its
        result; an error it raises is raised on every rank."""
        result, error = None, None
        if self.is_main:
            try:
                result = fn()
            except Exception as raised:  # noqa: BLE001 - re-raised on every rank below
                error = raised
        result, error = self.broadcast_object((result, error))
        if error is not None:
            raise error
        return result

    def shutdown(self) -> None:
        """Leave the process group (after success or failure)."""
        if dist.is_initialized():
            dist.destroy_process_group()


class SingleProcess(Distributed):
    """The process group of one process, where every collective is the identity.

    Training and evaluation code takes a group and never asks whether there is one: a
    single process passes this stand-in, which shards nothing, reduces nothing and leaves
    Pyro's own draws alone.

    :param device: the process's device.
    """

    def __init__(self, device: torch.device | str = "cpu") -> None:
        super().__init__(rank=0, world_size=1, device=torch.device(device), backend="none")

    def all_reduce_sum_(self, tensors: list[torch.Tensor]) -> None:
        pass

    def sum_scalars(self, *values: float) -> list[float]:
        return list(values)

    def gather_rows(self, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        return list(tensors)

    def broadcast_object(self, value):
        return value

    def broadcast_module_(self, module: nn.Module) -> None:
        pass

    def shard_batch(self, x: torch.Tensor, labels: torch.Tensor | None):
        return x, labels, nullcontext()

    def shutdown(self) -> None:
        pass


def process_group(distributed: Distributed | None) -> Distributed:
    """``distributed``, or the single-process stand-in for None (the public functions' default)."""
    return SingleProcess() if distributed is None else distributed


def launched_by_torchrun() -> bool:
    """Whether the environment describes a process group of more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(device: torch.device, timeout_s: float | None = None) -> Distributed:
    """Join the process group that ``torchrun`` (or a launcher setting ``RANK``, ``WORLD_SIZE``,
    ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) describes; :class:`SingleProcess` for a
    single process.

    :param device: the device asked for; on CUDA each rank takes ``cuda:LOCAL_RANK`` and NCCL,
        on the CPU Gloo.
    :param timeout_s: collective timeout (default ``PPL_VAE_DIST_TIMEOUT`` or 300 s).
    """
    if not launched_by_torchrun():
        return SingleProcess(device)
    timeout_s = timeout_s or float(os.environ.get("PPL_VAE_DIST_TIMEOUT", DEFAULT_TIMEOUT_S))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    return Distributed(dist.get_rank(), dist.get_world_size(), device, backend)
