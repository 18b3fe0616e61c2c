"""Pyro ELBOs' loss and gradient, compiled to one graph of tensor operations per input shape.

:class:`CompiledTrace_ELBO` runs Pyro's own :class:`~pyro.infer.Trace_ELBO` estimator (its
``_get_traces`` and ``_differentiable_loss_particle``) once with ``make_fx`` from
``torch.fx`` watching, together with autograd's backward pass, and records every tensor
operation of the loss *and of its gradient* in one graph. Later calls with arguments of the
same shapes replay that graph: Pyro's per-step Python work (messengers, traces, log-prob
bookkeeping) and the autograd engine are skipped. The graph's redundant operations are
removed once, and it is replayed as a generated Python function (:mod:`ppl_vae.infer.graph_passes`).
The estimator and its draws are unchanged: a compiled run gives the uncompiled run's loss
sequence (the graph keeps the random draws as operations, and compiling draws from a fork
of torch's RNG).

:class:`CompiledTraceMeanField_ELBO` and :class:`CompiledIWAE_ELBO` (the importance-weighted
bound of :mod:`ppl_vae.infer.iwae`) are compiled the same way.

The recorded graph runs on one of two backends (``backend``, see :mod:`ppl_vae.infer.graph_backends`):
``"fx"`` replays it as generated Python, operation by operation; ``"inductor"`` hands it to
torch's inductor compiler, which fuses its elementwise chains into a few kernels (compiled
once per argument shapes; ``compile_seconds`` records the time). Both draw the noise with
torch's own random operators and generator, so they see the uncompiled step's draws.
On CUDA both replay through a CUDA graph where capture succeeds.

Recording refuses a model whose structure depends on tensor values: a Python ``if`` or
``int()`` on a tensor computed from the arguments or parameters would fix one branch in the
graph for good, so reading a tensor's value while recording raises
:class:`~ppl_vae.infer.recording_guards.DataDependentStructureError`.

This plays the part of Pyro's ``JitTrace_ELBO`` (which records the loss alone with the
deprecated ``torch.jit.trace`` and differentiates it with TorchScript's autodiff), with the
same contract: the model and guide must have a static structure (no Python control flow
on tensor values) and take every tensor they depend on as an argument, and their
parameters must be in Pyro's param store (``pyro.module``, ``pyro.param``), from which they
are read on every call. :class:`~ppl_vae.infer.svi_step.SVIStep` gives the networks of each training run a
param store of its own, so that two runs with the same module names do not share
parameters. ``differentiable_loss`` returns the loss as a tensor whose ``backward()``
delivers the recorded gradient, so the ELBO also works under ``pyro.infer.SVI``.

Example::

    step = SVIStep(model, guide, make_elbo("trace", jit=True))
    step(x)  # compiles for x.shape, then replays
"""

import inspect
import time
import weakref
from typing import Callable

import pyro
import pyro.poutine as poutine
import torch
from pyro.infer import ELBO, Trace_ELBO, TraceMeanField_ELBO
from pyro.poutine.runtime import am_i_wrapped
from pyro.util import warn_if_nan
from torch.fx.experimental.proxy_tensor import make_fx
from torch.utils._pytree import tree_leaves

from ppl_vae.infer.finiteness import recorded_step_flag, step_flag
from ppl_vae.infer.graph_backends import BACKENDS, replay_function
from ppl_vae.infer.graph_passes import remove_redundant_operations
from ppl_vae.infer.iwae import IWAE_ELBO
from ppl_vae.infer.recording_guards import tensor_valued_losses, values_not_read


class CompiledELBO:
    """Compile a Pyro ELBO's ``differentiable_loss`` with its gradient, once per argument shapes.

    :param backend: ``"fx"`` (replay as generated Python) or ``"inductor"`` (fused kernels).
    :param cuda_graphs: on CUDA, replay through a captured CUDA graph.

    Other arguments are the ELBO's own (``num_particles``, ``max_plate_nesting``, ...).
    """

    def __init__(self, *args, backend: str = "fx", cuda_graphs: bool = True, **kwargs) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
        super().__init__(*args, **kwargs)
        self.backend, self.cuda_graphs = backend, cuda_graphs
        #: seconds spent recording and compiling, one entry per argument shapes
        self.compile_seconds: list[float] = []

    def is_recorded(self, model, guide, *args, **kwargs) -> bool:
        """Whether a graph for these arguments' shapes exists (the next call replays it)."""
        return self.graph_key(model, guide, *args, **kwargs) in self.__dict__.get("_graphs", {})

    @property
    def num_graphs(self) -> int:
        """How many argument shapes have a recorded graph."""
        return len(self.__dict__.get("_graphs", {}))

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        """The loss (``-ELBO``) as a tensor whose ``backward()`` adds the recorded gradient to
        the parameters' ``.grad``."""
        loss, gradients = self.loss_and_gradient(model, guide, *args, **kwargs)
        params, grads = zip(*gradients)
        return _PrecomputedGradient.apply(loss, grads, *params)

    def loss_and_gradient(self, model, guide, *args, **kwargs) -> tuple[torch.Tensor, list[tuple]]:
        """The loss and its gradient, without autograd.

        :returns: the loss (``-ELBO``, a 0-dim tensor) and a list of ``(parameter, gradient)``,
            the parameters unconstrained, as Pyro's param store holds them (the gradient is
            None for a parameter the loss does not depend on).
        """
        loss, gradients, _ = self._replay(model, guide, args, kwargs)
        return loss, gradients

    def checked_loss_and_gradient(self, model, guide, *args,
                                  **kwargs) -> tuple[torch.Tensor, list[tuple], torch.Tensor]:
        """:meth:`loss_and_gradient` and whether they are finite, for the step's NaN policy.

        :returns: the loss, the ``(parameter, gradient)`` list, and a 0-dim float32 tensor: 1
            if the loss or a gradient is not finite, else 0
            (:mod:`~ppl_vae.infer.finiteness`). Inductor's graph computes it with the
            gradients, in its fused kernels; for the fx graph it is computed after the replay.
        """
        loss, gradients, flag = self._replay(model, guide, args, kwargs)
        if flag is None:
            flag = step_flag(loss, [grad for _, grad in gradients if grad is not None])
        return loss, gradients, flag

    def _replay(self, model, guide, args: tuple, kwargs: dict) -> tuple[torch.Tensor, list[tuple], torch.Tensor | None]:
        """The loss, the gradients and the non-finite flag if the graph computes it (else None)."""
        names, used, replay, checked = self._compiled(model, guide, args, kwargs)
        if am_i_wrapped():  # e.g. inside pyro.infer.SVI's parameter capture, which must see the reads
            params = [pyro.param(name).unconstrained() for name in names]
        else:
            store = dict(pyro.get_param_store().named_parameters())
            params = [store[name] for name in names]
        with torch.no_grad():
            loss, *grads = replay(*params, *tree_leaves(args))
        flag = grads.pop(0) if checked else None
        grads = iter(grads)
        return loss, [(param, next(grads) if is_used else None) for param, is_used in zip(params, used)], flag

    def loss_and_grads(self, model, guide, *args, **kwargs) -> float:
        """For ``pyro.infer.SVI``: the loss, with its gradient added to the parameters' ``.grad``."""
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        loss.backward()
        return warn_if_nan(loss.item(), "loss")

    def recompile(self, model, guide, *args, backend: str, **kwargs) -> None:
        """Record the graph for these arguments' shapes anew and compile it on ``backend``,
        replacing the one recorded before (if any) for later calls; the RNG is left as it was.

        :raises Exception: whatever the backend raises when it cannot compile the graph (for
            inductor: no C++ compiler, or an operation it cannot lower); the graph recorded
            before then stays.
        """
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
        self._record(model, guide, args, kwargs, backend)

    def _compiled(self, model, guide, args: tuple, kwargs: dict) -> tuple[list[str], list[bool], Callable, bool]:
        """The graph for this model, guide and argument signature, recorded on first use.

        Graphs are keyed by weak references to the model and guide (not by ``id``, which a
        new object may reuse once the old one is collected), and dropped with them.
        """
        graphs = self.__dict__.setdefault("_graphs", {})
        key = self.graph_key(model, guide, *args, **kwargs)  # to look up: plain references, cached by Python
        if key not in graphs:
            self._record(model, guide, args, kwargs, self.backend)
        return graphs[key]

    def graph(self, key: tuple) -> tuple:
        """The compiled graph stored under ``key`` (:meth:`graph_key`)."""
        return self._graphs[key]

    def restore(self, key: tuple, graph: tuple) -> None:
        """Store ``graph`` (from :meth:`graph`) under ``key`` again, e.g. after :meth:`recompile`."""
        self._graphs[key] = graph

    def _record(self, model, guide, args: tuple, kwargs: dict, backend: str) -> None:
        """Record and compile the graph for these arguments' shapes, and store it under
        references that drop it when the model or guide goes."""
        start = time.perf_counter()
        graph = self._compile(model, guide, args, kwargs, backend)
        key = (_weak(model, self._forget), _weak(guide, self._forget), *self.graph_key(model, guide, *args, **kwargs)[2:])
        self.__dict__.setdefault("_graphs", {})[key] = graph
        self.compile_seconds.append(time.perf_counter() - start)

    @staticmethod
    def graph_key(model, guide, *args, **kwargs) -> tuple:
        """What identifies a graph: the model, the guide (weakly) and the arguments' shapes."""
        return (_weak(model), _weak(guide), *(_signature(a) for a in args), *sorted(kwargs.items()))

    def _forget(self, dead: weakref.ref) -> None:
        """Drop the graphs of a collected model or guide."""
        graphs = self.__dict__.get("_graphs", {})
        for key in [key for key in graphs if dead in key[:2]]:
            del graphs[key]

    def _compile(self, model, guide, args: tuple, kwargs: dict,
                 backend: str) -> tuple[list[str], list[bool], Callable, bool]:
        """Record the loss and gradient: the parameters' names, whether the loss depends on
        each, a function of the parameters and the arguments' tensors that returns the loss,
        the non-finite flag if the graph computes it, and the gradients of the used
        parameters, compiled on ``backend``; and whether the graph computes the flag.

        Inductor's graph computes it (:func:`~ppl_vae.infer.finiteness.recorded_step_flag`,
        fused into the kernels that produce the gradients). The fx graph leaves it to one
        eager pass after the replay, cheaper than its operations one by one in Python.
        """
        used, checked = [], backend == "inductor"

        def loss_and_gradient(params: list[torch.Tensor], args: tuple):
            loss, surrogate_loss = self._loss_and_surrogate_loss(model, guide, args, kwargs)
            grads = torch.autograd.grad(surrogate_loss, params, allow_unused=True)
            used.extend(g is not None for g in grads)
            loss, grads = loss.detach(), [g for g in grads if g is not None]
            return (loss, recorded_step_flag(loss, grads), grads) if checked else (loss, grads)

        # compiling runs the model and guide twice, on a fork of torch's RNG, so that the
        # compiled loss sees the draws the uncompiled one would have seen
        with torch.random.fork_rng(devices=cuda_devices(args)), tensor_valued_losses():
            with poutine.block(), poutine.trace(param_only=True) as capture:
                # creates the parameters, and checks shapes and supports if validation is on
                self._loss_and_surrogate_loss(model, guide, args, kwargs)
                names = list(capture.trace.nodes)
                params = [pyro.param(name).unconstrained() for name in names]
                with pyro.validation_enabled(False), values_not_read():  # the checks would be recorded as constants
                    graph = make_fx(loss_and_gradient, tracing_mode="real")(params, args)
                graph = remove_redundant_operations(graph)
                replay = replay_function(graph, [p.detach() for p in params], tree_leaves(args),
                                         backend, self.cuda_graphs)
        return names, used, replay, checked

    def _loss_and_surrogate_loss(self, model, guide, args: tuple, kwargs: dict):
        """``Trace_ELBO.differentiable_loss`` without its conversion of the loss to a number."""
        loss = surrogate_loss = 0.0
        for model_trace, guide_trace in self._get_traces(model, guide, args, kwargs):
            loss_particle, surrogate_loss_particle = self._differentiable_loss_particle(model_trace, guide_trace)
            loss = loss + loss_particle / self.num_particles
            surrogate_loss = surrogate_loss + surrogate_loss_particle / self.num_particles
        return loss, surrogate_loss


class CompiledTrace_ELBO(CompiledELBO, Trace_ELBO):
    """:class:`~pyro.infer.Trace_ELBO` with its loss and gradient compiled once per input shape.

    Example::

        elbo = CompiledTrace_ELBO(max_plate_nesting=1)
        svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 1e-3}), elbo)
    """


class CompiledTraceMeanField_ELBO(CompiledELBO, TraceMeanField_ELBO):
    """:class:`~pyro.infer.TraceMeanField_ELBO` with its loss and gradient compiled once per input shape."""


class CompiledIWAE_ELBO(CompiledELBO, IWAE_ELBO):
    """:class:`~ppl_vae.infer.iwae.IWAE_ELBO` (the importance-weighted bound) with its loss and
    gradient compiled once per input shape; the loss is its own surrogate (every guide site
    is reparameterized).

    Example::

        elbo = CompiledIWAE_ELBO(num_particles=5, vectorize_particles=True, max_plate_nesting=1)
        step = SVIStep(model, guide, elbo)
    """

    def _loss_and_surrogate_loss(self, model, guide, args: tuple, kwargs: dict):
        loss = IWAE_ELBO.differentiable_loss(self, model, guide, *args, **kwargs)
        return loss, loss


class _PrecomputedGradient(torch.autograd.Function):
    """The loss as a function of the parameters, with the gradient recorded beside it."""

    @staticmethod
    def forward(ctx, loss: torch.Tensor, grads: tuple, *params: torch.Tensor) -> torch.Tensor:
        ctx.grads = grads
        return loss.clone()

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        grads, ctx.grads = ctx.grads, None
        return None, None, *(None if g is None else g * grad_output for g in grads)


def cuda_devices(args: tuple) -> list[int]:
    """The indices of the CUDA devices of the tensors in ``args`` (for ``torch.random.fork_rng``)."""
    return sorted({a.device.index or 0 for a in args if torch.is_tensor(a) and a.device.type == "cuda"})


def _weak(fn: Callable, callback: Callable | None = None) -> weakref.ref:
    """A weak reference to a model or guide (a bound method's to its object and function)."""
    return weakref.WeakMethod(fn, callback) if inspect.ismethod(fn) else weakref.ref(fn, callback)


def _signature(value):
    return (tuple(value.shape), value.dtype, value.device) if torch.is_tensor(value) else value


_COMPILED_ELBOS = (CompiledELBO, pyro.infer.JitTrace_ELBO, pyro.infer.JitTraceMeanField_ELBO,
                   pyro.infer.JitTraceGraph_ELBO, pyro.infer.JitTraceEnum_ELBO)


def is_jit(elbo: ELBO) -> bool:
    """Whether ``elbo`` is compiled (this module's, or Pyro's JIT ELBOs): it reads the
    parameters from the param store."""
    return isinstance(elbo, _COMPILED_ELBOS)
