"""The compiled step by default, checked: ``compile="auto"``.

:func:`make_svi_step` builds the step that :class:`~ppl_vae.training.trainer.Trainer` takes
for a ``compile`` mode:

- ``"off"``: :class:`~ppl_vae.infer.svi_step.SVIStep` with Pyro's ELBO;
- ``"fx"``, ``"inductor"``: the same step with the compiled ELBO (:mod:`ppl_vae.infer.compiled`);
- ``"auto"`` (the default): :class:`CheckedCompiledStep`, the ``"fx"`` step whose every newly
  recorded graph is checked against the uncompiled ELBO on the same draws. It falls back
  to the uncompiled step, with one notice line on the ``ppl_vae`` logger naming the reason,
  when the objective has no compiled version (``"enum"``), under data-parallel training, when
  the model cannot be recorded (its structure depends on tensor values), when the batch
  shapes keep changing, or when the compiled loss or gradient differs from the uncompiled
  one. It never trains another objective than the uncompiled step would.

  Compilation is tiered, as in a JIT: an argument shape that has taken
  :attr:`CheckedCompiledStep.promote_after` steps (1000 by default) is compiled again with
  inductor's fused kernels (seconds, paid once per shape and only by runs long enough to
  repay it), and that graph is checked on the same draws like the first. Where inductor
  cannot compile the graph (no C++ compiler, say) or its graph disagrees, that shape stays
  on its checked ``"fx"`` graph, with a notice. The per-shape step counts are part of the
  step's :meth:`~CheckedCompiledStep.state_dict`, which training checkpoints keep, so a
  resumed run promotes at the same step as an uninterrupted one.

The contract of a compiled step: the model and guide have a static structure (no Python
control flow on tensor values; a fixed set of sample sites for each argument shape) and
take every tensor they depend on as an argument or a parameter.
"""

import logging

import torch
from pyro.infer import ELBO

from ppl_vae.infer.compiled import CompiledELBO, cuda_devices
from ppl_vae.infer.elbos import JIT_ELBOS, make_elbo
from ppl_vae.infer.recording_guards import DataDependentStructureError
from ppl_vae.infer.svi_step import SVIStep
from ppl_vae.nn.registration import registration_skipped

logger = logging.getLogger("ppl_vae")


def notice_uncompiled(reason: str) -> None:
    """The one notice line of a step that trains uncompiled under ``compile="auto"``."""
    logger.warning("compile auto: %s; training uncompiled", reason)


class CompiledStepMismatch(RuntimeError):
    """The compiled loss or gradient differs from the uncompiled one on the same draws."""


class CheckedCompiledStep(SVIStep):
    """:class:`~ppl_vae.infer.svi_step.SVIStep` with a compiled ELBO, checked on the first step of
    each argument shape against ``uncompiled``; on any failure it becomes the uncompiled step.

    :param uncompiled: the same estimator, uncompiled (the reference and the fallback).
    :param max_graphs: fall back once this many argument shapes have been recorded (shapes
        that change from step to step would compile at every step).
    :param rtol: the relative tolerance (in norm) of the check, per parameter.

    Other parameters are :class:`~ppl_vae.infer.svi_step.SVIStep`'s.

    ``fallback_reason`` is None while the step is compiled, else why it is not; ``checked``
    holds the graph keys (:meth:`~ppl_vae.infer.compiled.CompiledELBO.graph_key`) that agreed;
    ``shape_steps`` counts the steps of each argument shape, and ``promoted`` holds the shapes
    whose promotion to inductor was tried.
    """

    #: Steps of one argument shape after which it is compiled with inductor (None: never).
    promote_after: int | None = 1000

    def __init__(self, model, guide, elbo: CompiledELBO, uncompiled: ELBO, lr: float = 1e-3, beta: float = 1.0,
                 max_graphs: int = 8, rtol: float = 1e-4) -> None:
        super().__init__(model, guide, elbo, lr, beta)
        self.uncompiled, self.max_graphs, self.rtol = uncompiled, max_graphs, rtol
        self.fallback_reason: str | None = None
        self.checked: set[tuple] = set()
        self.shape_steps: dict[str, int] = {}
        self.promoted: set[str] = set()
        self._fx_graphs: dict[tuple, tuple] = {}  # a promoted shape's checked fx graph, until inductor's agrees

    def state_dict(self) -> dict:
        """The steps taken per argument shape (JSON-able), which decide the promotions."""
        return {"shape_steps": dict(self.shape_steps)}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.shape_steps = dict(state.get("shape_steps", {}))

    def fall_back(self, reason: str) -> None:
        """Train uncompiled from now on, with a notice naming ``reason``."""
        self.fallback_reason = reason
        self.elbo = self.uncompiled
        notice_uncompiled(reason)

    def _loss_gradient_and_flag(self, *args):
        if not isinstance(self.elbo, CompiledELBO):
            return super()._loss_gradient_and_flag(*args)
        model, guide, weighted = self._weighted(*args)
        key = self.elbo.graph_key(model, guide, *weighted)
        shape = repr(key[2:])
        self.shape_steps[shape] = self.shape_steps.get(shape, 0) + 1
        if (key in self.checked and self.promote_after is not None and shape not in self.promoted
                and self.shape_steps[shape] > self.promote_after):
            self._promote(model, guide, weighted, key, shape)
        if key in self.checked:
            return super()._loss_gradient_and_flag(*args)
        recorded = self.elbo.is_recorded(model, guide, *weighted)
        if not recorded and self.elbo.num_graphs >= self.max_graphs:
            self.fall_back(f"the argument shapes keep changing ({self.elbo.num_graphs} recorded)")
            return super()._loss_gradient_and_flag(*args)
        try:
            with torch.random.fork_rng(devices=cuda_devices(args)):  # the reference below sees the same draws
                loss, gradients, flag = super()._loss_gradient_and_flag(*args)
        except DataDependentStructureError as error:
            self.fall_back(f"the model cannot be recorded: {error}")
            return super()._loss_gradient_and_flag(*args)
        reference, reference_gradients = self._uncompiled_loss_and_gradient(model, guide, weighted,
                                                                            [p for p, _ in gradients])
        if not torch.isfinite(reference.detach()).all():  # nothing to judge the graph by: check the next step
            return reference, None, None  # the step's NaN policy sees the uncompiled loss
        try:
            check_agreement(loss, gradients, reference, reference_gradients, self.rtol)
        except CompiledStepMismatch as error:
            if key in self._fx_graphs:  # inductor's graph: this shape keeps its checked fx graph
                self.elbo.restore(key, self._fx_graphs.pop(key))
                self.checked.add(key)
                logger.warning("compile auto: inductor's graph for %s: %s; staying on fx", _shapes(key), error)
            else:
                self.fall_back(str(error))
            return reference, None, None
        self._fx_graphs.pop(key, None)
        self.checked.add(key)
        return loss, gradients, flag

    def _promote(self, model, guide, args: tuple, key: tuple, shape: str) -> None:
        """Compile this shape's graph with inductor; the next check judges it."""
        self.promoted.add(shape)
        previous = self.elbo.graph(key)
        try:
            with self._param_store():  # the step's own parameters, as at the first recording
                self.elbo.recompile(model, guide, *args, backend="inductor")
        except Exception as error:  # inductor's failures have many types: no compiler, an unlowerable operation
            logger.warning("compile auto: inductor cannot compile the graph for %s (%s); staying on fx", _shapes(key),
                           (str(error).strip() or type(error).__name__).splitlines()[0])
            return
        logger.info("compile auto: the graph for %s compiled with inductor after %d steps (%.1f s)", _shapes(key),
                    self.shape_steps[shape] - 1, self.elbo.compile_seconds[-1])
        self._fx_graphs[key] = previous
        self.checked.discard(key)

    def _uncompiled_loss_and_gradient(self, model, guide, args: tuple, params: list[torch.Tensor]):
        """The uncompiled loss (its graph kept, for the step) and its gradients in ``params``."""
        with registration_skipped():
            loss = self.uncompiled.differentiable_loss(model, guide, *args)
        return loss, torch.autograd.grad(loss, params, allow_unused=True, retain_graph=True)


def _shapes(key: tuple) -> str:
    """The arguments' shapes in a graph key, for a notice: ``batch (128, 1, 28, 28)``."""
    shapes = [str(item[0]) if isinstance(item, tuple) and len(item) == 3 else repr(item) for item in key[2:]]
    return "arguments " + ", ".join(shapes)


def check_agreement(loss: torch.Tensor, gradients: list[tuple], reference: torch.Tensor,
                    reference_gradients: tuple, rtol: float) -> None:
    """Raise :class:`CompiledStepMismatch` unless the compiled loss and each parameter's gradient
    are within ``rtol`` (relative, in norm) of the uncompiled ones."""
    def close(a: torch.Tensor, b: torch.Tensor) -> bool:
        a, b = a.detach().double(), b.detach().double()
        return bool(torch.isfinite(a).all()) and float((a - b).norm()) <= rtol * float(b.norm()) + 1e-30

    if not close(loss, reference):
        raise CompiledStepMismatch(f"the compiled loss {float(loss.detach()):.6g} differs from the uncompiled "
                                   f"{float(reference.detach()):.6g} on the same draws")
    for index, ((param, grad), expected) in enumerate(zip(gradients, reference_gradients)):
        if grad is None and expected is None:
            continue
        grad = torch.zeros_like(param) if grad is None else grad
        expected = torch.zeros_like(param) if expected is None else expected
        if not close(grad, expected):
            error = float((grad - expected).norm() / expected.norm().clamp_min(1e-30))
            raise CompiledStepMismatch(f"the compiled gradient of parameter {index} (shape {tuple(param.shape)}) "
                                       f"differs from the uncompiled one by {error:.2g} (relative) on the same draws")


def make_svi_step(model, guide, elbo: str = "trace", num_particles: int = 1, compile: str = "auto",
                  lr: float = 1e-3, beta: float = 1.0, distributed=None) -> SVIStep:
    """The SVI step for a ``compile`` mode (``"auto"``, ``"fx"``, ``"inductor"`` or ``"off"``).

    :param elbo: the objective's name (:func:`~ppl_vae.infer.elbos.make_elbo`).
    :param distributed: data-parallel training; ``"auto"`` then trains uncompiled.
    :raises ValueError: for ``"fx"`` or ``"inductor"`` with an objective that has no compiled
        version, or under data-parallel training.
    """
    if compile != "auto":
        return SVIStep(model, guide, make_elbo(elbo, num_particles, compile=compile), lr, beta, distributed)
    uncompiled = make_elbo(elbo, num_particles)
    reason = None
    if elbo not in JIT_ELBOS:
        reason = f"the {elbo} ELBO has no compiled version"
    elif getattr(distributed, "is_distributed", False):
        reason = "data-parallel training draws each rank's noise apart, which a recorded graph cannot"
    if reason is not None:
        notice_uncompiled(reason)
        step = SVIStep(model, guide, uncompiled, lr, beta, distributed)
        step.fallback_reason = reason
        return step
    return CheckedCompiledStep(model, guide, make_elbo(elbo, num_particles, compile="fx"), uncompiled, lr, beta)
