"""The NaN policy of training, applied to steps whose results are read back in batches.

:meth:`SVIStep.take <ppl_vae.infer.svi_step.SVIStep.take>` leaves each step's loss and
finiteness on the device, and a non-finite step is skipped there (fused Adam's
``found_inf``). :class:`NanPolicy` holds those results until they are read back, all in one
transfer, and then applies ``CheckpointOptions.on_nan`` to each step in order: ``"stop"``
raises at the first non-finite one, naming its step and the site that went non-finite;
``"skip"`` counts it, and gives up after ``max_skipped`` in a row.

How often the results are read back is :func:`readback_interval`: after every step on the
CPU, where reading costs nothing, so ``"stop"`` raises before another step is taken; every
20 steps on other devices, so that the host does not wait for the device at every step. There
``"stop"`` raises at most 19 steps after the non-finite one (those steps, all finite, have
been taken), and the site named is the one at the parameters of the readback.
"""

import math
from dataclasses import dataclass
from typing import Callable

import torch

from ppl_vae.infer.svi_step import NonFiniteLossError


def readback_interval(device: torch.device) -> int:
    """Steps between two readbacks of their results: 1 on the CPU, 20 elsewhere."""
    return 1 if torch.device(device).type == "cpu" else 20


@dataclass
class PendingStep:
    """A step whose result is still on the device."""

    result: torch.Tensor  #: ``SVIStep.take``'s ``(loss, non_finite)``
    size: int  #: images in the (global) batch
    number: int  #: the global step, from 1
    epoch: int
    args: tuple  #: the step's arguments, for the diagnosis of a non-finite step


class NanPolicy:
    """The NaN policy and its counters (kept in training checkpoints).

    :param on_nan: ``"stop"`` or ``"skip"``.
    :param max_skipped: with ``"skip"``, how many steps in a row may be skipped.
    :param where: the site that went non-finite for a step's arguments (a diagnosis).
    :param every: steps between readbacks (:func:`readback_interval`).
    """

    #: The counters, saved and restored with a training checkpoint.
    COUNTERS = ("skipped", "skipped_in_a_row", "nonfinite_evaluations")

    def __init__(self, on_nan: str, max_skipped: int, where: Callable[..., str], every: int = 1) -> None:
        self.on_nan, self.max_skipped, self.where, self.every = on_nan, max_skipped, where, every
        self.skipped = self.skipped_in_a_row = self.nonfinite_evaluations = 0
        self.pending: list[PendingStep] = []

    def add(self, step: PendingStep) -> bool:
        """Hold a step's result. :returns: whether a readback is due."""
        self.pending.append(step)
        return len(self.pending) >= self.every

    def read_back(self) -> tuple[float, int]:
        """Read the held results in one transfer and apply the policy to each step in order.

        :returns: the sum of the finite steps' losses and their images.
        :raises NonFiniteLossError: under ``"stop"`` at a non-finite step; under ``"skip"``
            after more than ``max_skipped`` in a row.
        """
        pending, self.pending = self.pending, []
        total, seen = 0.0, 0
        if not pending:
            return total, seen
        for (loss, non_finite), step in zip(torch.stack([p.result for p in pending]).tolist(), pending):
            if non_finite:
                self.non_finite("a gradient is not finite" if math.isfinite(loss) else f"the loss is {loss}",
                                step.number, step.epoch, step.args)
            else:
                total, seen, self.skipped_in_a_row = total + loss, seen + step.size, 0
        return total, seen

    def non_finite(self, error: str, number: int, epoch: int, args: tuple) -> None:
        """Apply the policy to a non-finite step."""
        where = self.where(*args)
        if self.on_nan == "stop":
            raise NonFiniteLossError(f"{error} at step {number} (epoch {epoch}); non-finite: {where}")
        self.skipped += 1
        self.skipped_in_a_row += 1
        if self.skipped_in_a_row > self.max_skipped:
            raise NonFiniteLossError(f"{self.skipped_in_a_row} steps in a row skipped for non-finite values "
                                     f"(last at step {number}: {where}); giving up")

    def check_evaluation(self, row: dict, keys: tuple, epoch: int) -> bool:
        """Apply the policy to an epoch's evaluation: ``"stop"`` raises, ``"skip"`` counts it
        (column ``nonfinite_evaluations``). :returns: whether every value is finite."""
        bad = [key for key in keys if key in row and not math.isfinite(row[key])]
        if not bad:
            return True
        what = f"the epoch-{epoch} {bad[0].replace('_', ' ')} is {row[bad[0]]}"
        if self.on_nan == "stop":
            raise NonFiniteLossError(f"{what}; the checkpoints up to epoch {epoch - 1} are kept")
        self.nonfinite_evaluations += 1
        row["nonfinite_evaluations"] = self.nonfinite_evaluations
        return False
