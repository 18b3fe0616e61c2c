"""Registration of networks with Pyro's param store, and a switch to skip it in a hot loop.

Models and guides call :func:`register` at the top of ``forward``, like
``pyro.module(name, self)`` in Pyro's examples, so they work under plain
``pyro.infer.SVI``. The library's own training step optimizes the modules'
parameters directly with one torch optimizer and needs no param store, so it
runs inside :func:`registration_skipped`, which saves the per-step cost of
re-registering every parameter.
"""

import warnings
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator

import pyro
from torch import nn

_REGISTER: ContextVar[bool] = ContextVar("ppl_vae_register", default=True)


def register(name: str, module: nn.Module) -> None:
    """``pyro.module(name, module)``, unless inside :func:`registration_skipped`.

    Frozen parameters (``requires_grad=False``, e.g. the quadrant CVAE's trained baseline)
    stay out of the param store, as in ``pyro.module``, without its warning about them.
    """
    if _REGISTER.get():
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*was not registered in the param store because requires_grad=False")
            pyro.module(name, module)


@contextmanager
def registration_skipped() -> Iterator[None]:
    """Within this block, :func:`register` does nothing."""
    token = _REGISTER.set(False)
    try:
        yield
    finally:
        _REGISTER.reset(token)
