"""Guards while a Pyro ELBO is recorded into a graph (:mod:`ppl_vae.infer.compiled`).

A recorded graph keeps one branch of any Python control flow for good, and keeps any number
converted from a tensor as a constant. These guards turn the first into an error and keep the
second from happening inside Pyro's ELBOs.
"""

from contextlib import contextmanager
from typing import Iterator
from unittest import mock

import pyro.infer.trace_elbo
import pyro.infer.trace_mean_field_elbo
from torch.overrides import TorchFunctionMode


class DataDependentStructureError(RuntimeError):
    """The model or guide read a tensor's value while being recorded (Python control flow on tensors)."""


class values_not_read(TorchFunctionMode):
    """Raise :class:`DataDependentStructureError` when a tensor's value is read (``bool``, ``int``,
    ``float``, ``.item()``, ``.tolist()``, ``nonzero``): recording would fix the branch taken."""

    READS = frozenset({"__bool__", "__int__", "__float__", "__index__", "item", "tolist", "nonzero"})

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in self.READS:
            raise DataDependentStructureError(
                f"the model or guide reads a tensor's value ({name}) while being recorded: its structure depends on "
                "tensor values, which a recorded graph cannot follow")
        return func(*args, **(kwargs or {}))


@contextmanager
def tensor_valued_losses() -> Iterator[None]:
    """Keep Pyro's ELBOs from converting the loss to a Python number (a constant in the graph)."""
    with (mock.patch.object(pyro.infer.trace_elbo, "torch_item", lambda x: x),
          mock.patch.object(pyro.infer.trace_mean_field_elbo, "torch_item", lambda x: x)):
        yield
