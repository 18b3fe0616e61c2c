"""The SVI loop: Trace_ELBO gradient steps over a device-resident dataset.

No argparse and no printing here beyond the tqdm progress bar; the CLI and users'
scripts call :func:`~ppl_vae.training.trainer.fit`.

The step is Pyro's: the loss is ``Trace_ELBO().differentiable_loss(model, guide, x)``,
exactly what ``pyro.infer.SVI`` differentiates. Two things make it fast: one torch
Adam (fused where torch offers it) steps all parameters at once instead of one
optimizer per parameter, and the networks' ``pyro.module`` registration is skipped in
the hot loop (see :mod:`ppl_vae.nn.registration`), since the optimizer holds the
parameters itself. Pyro's and torch's argument validation runs on the first step, which
catches shape and support errors, and is switched off after it; the loss and the
gradients are still checked for NaN at every step (:mod:`ppl_vae.infer.finiteness`), on the device:
:meth:`SVIStep.take` returns the loss and that flag as a tensor, and a non-finite step is
skipped by fused Adam itself (``found_inf``), so the step need not wait for the device; the
trainer reads several steps back at once (:mod:`ppl_vae.training.nan_policy`). The ELBO
may be compiled (``make_elbo(..., compile="fx")``,
:mod:`ppl_vae.infer.compiled`), which replays a recorded graph instead of running Pyro's
Python machinery at every step; :func:`~ppl_vae.infer.auto_compile.make_svi_step` builds the
step for ``TrainConfig.compile``, compiled and checked by default.
"""

import math
from contextlib import contextmanager
from typing import Callable, Iterator

import pyro
import pyro.poutine as poutine
import torch
from pyro.infer import ELBO
from pyro.poutine.util import is_validation_enabled
from torch import nn
from torch.optim.adam import adam as functional_adam

from ppl_vae.infer.compiled import CompiledELBO, is_jit
from ppl_vae.infer.finiteness import step_flag
from ppl_vae.infer.latent_scale import LatentScaleMessenger
from ppl_vae.nn.registration import registration_skipped


def make_adam(params, lr: float) -> torch.optim.Adam:
    """torch's Adam over ``params``, fused when torch supports it for their device."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, ValueError):
        return torch.optim.Adam(params, lr=lr)


def is_fused(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer`` is torch's fused Adam, which can skip a step on the device (``found_inf``)."""
    groups = optimizer.param_groups
    return type(optimizer) is torch.optim.Adam and all(group["fused"] for group in groups)


def adam_step(optimizer: torch.optim.Optimizer, found_inf: torch.Tensor | None = None) -> None:
    """``optimizer.step()``; for a fused torch Adam whose state exists, torch's functional
    ``adam`` on the same tensors and settings (the same update, bitwise), without the
    per-step Python work of ``Optimizer.step`` (hooks, state lookups, grouping): a few
    percent of a small network's step.

    :param found_inf: for a fused Adam, a 0-dim float tensor on the parameters' device: where
        it is 1 the kernel leaves the parameters and Adam's state as they were (the skipped
        step of torch's ``GradScaler``), decided on the device, without a transfer to the host.
    """
    groups = optimizer.param_groups
    group = groups[0]
    params = [p for p in group["params"] if p.grad is not None]
    states = [optimizer.state.get(p) for p in params]
    if not (is_fused(optimizer) and len(groups) == 1 and not group["amsgrad"] and not group["differentiable"]
            and not group.get("decoupled_weight_decay", False) and all(states)):
        # torch's own path (it also creates a parameter's state on its first step); its fused
        # Adam reads ``found_inf`` from the optimizer, which must not outlive this step
        optimizer.found_inf = found_inf
        try:
            optimizer.step()
        finally:
            del optimizer.found_inf
        return
    beta1, beta2 = group["betas"]
    functional_adam(params, [p.grad for p in params], [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states],
                    [], [s["step"] for s in states], fused=True, capturable=group["capturable"], amsgrad=False,
                    beta1=beta1, beta2=beta2, lr=group["lr"], weight_decay=group["weight_decay"], eps=group["eps"],
                    maximize=group["maximize"], found_inf=found_inf)


class NonFiniteLossError(RuntimeError):
    """The loss or the gradients became NaN or infinite."""


class SVIStep:
    """One stochastic-gradient step on ``-ELBO``, equivalent to ``pyro.infer.SVI.step``.

    :param model: the Pyro model: an ``nn.Module``, or any callable whose parameters are
        ``pyro.param`` sites.
    :param guide: the Pyro guide, likewise: any callable that samples the model's latent sites.
    :param elbo: a Pyro ELBO, e.g. ``Trace_ELBO()``.
    :param lr: Adam's learning rate.
    :param beta: the KL weight; ``kl`` holds it and may be changed between steps.
    :param distributed: data-parallel training (:mod:`ppl_vae.training.distributed`): the gradients
        and the loss are summed over ranks before the step, so every rank takes the step of
        the global batch.

    With a compiled ELBO (``make_elbo(..., compile="fx")``) the networks are registered in
    a param store of the step's own (Pyro's ``param_store.scope``), from which the compiled
    graph reads them (plain callables keep their ``pyro.param`` sites in the global store), and
    the KL weight is passed to the graph as a tensor, so that warm-up
    changes it without a recompilation.
    """

    def __init__(self, model, guide, elbo: ELBO, lr: float = 1e-3, beta: float = 1.0, distributed=None) -> None:
        distributed = distributed if getattr(distributed, "is_distributed", False) else None  # one process: plain
        if distributed is not None and is_jit(elbo):
            # the compiled graph would replay the first step's slice of the global batch's noise
            raise ValueError("a JIT-compiled ELBO does not support data-parallel training; train without --jit "
                             "under torchrun")
        self.model, self.guide, self.elbo, self.lr, self.distributed = model, guide, elbo, lr, distributed
        self.kl = LatentScaleMessenger(beta)  # holds the KL weight (kl.scale) between steps
        self.optimizer: torch.optim.Optimizer | None = None
        self.validated = False
        self._param_state = None  # the step's own param store, for JIT-compiled ELBOs
        self._scale: torch.Tensor | None = None  # the KL weight for a compiled ELBO, and its value
        self._scale_value: float | None = None
        self._scaled_model, self._scaled_guide = _latent_scaled(model), _latent_scaled(guide)
        self._modules_only = isinstance(model, nn.Module) and isinstance(guide, nn.Module)
        if self._modules_only:
            self.optimizer = make_adam(dict.fromkeys([*model.parameters(), *guide.parameters()]), lr)

    def state_dict(self) -> dict:
        """The step's state beyond the optimizer's, JSON-able (none here; see subclasses)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict` (of a run that already took its first, validated step)."""
        self.validated = True

    def set_lr(self, lr: float) -> None:
        """Use Adam's learning rate ``lr`` from the next step on."""
        self.lr = lr
        for group in self.optimizer.param_groups if self.optimizer is not None else ():
            group["lr"] = lr

    def _make_optimizer(self, *args) -> torch.optim.Optimizer:
        """Adam over the modules' parameters and the unconstrained ``pyro.param``s of plain callables."""
        params = []
        for fn in (self.model, self.guide):
            if isinstance(fn, nn.Module):
                params.extend(fn.parameters())
            else:
                trace = poutine.trace(fn, param_only=True).get_trace(*args)
                params.extend(site["value"].unconstrained() for site in trace.nodes.values() if site["type"] == "param")
        return make_adam(dict.fromkeys(params), self.lr)

    @contextmanager
    def _param_store(self) -> Iterator[None]:
        """The step's own param store for networks (their names are the same in every run);
        Pyro's global one for plain callables, whose ``pyro.param``s are the user's."""
        if not self._modules_only:
            yield
            return
        with pyro.get_param_store().scope(self._param_state) as self._param_state:
            yield

    def loss(self, *args) -> torch.Tensor:
        """The differentiable ``-ELBO`` (KL term weighted by ``kl.scale``), summed over the batch."""
        model, guide, args = self._weighted(*args)
        if is_jit(self.elbo):
            with self._param_store():
                return self.elbo.differentiable_loss(model, guide, *args)
        with registration_skipped():
            return self.elbo.differentiable_loss(model, guide, *args)

    def _weighted(self, *args) -> tuple:
        """The model, guide and arguments whose ELBO weights the KL term by ``kl.scale``."""
        if self.kl.scale == 1:  # at weight 1 the messenger would only cost time
            return self.model, self.guide, args
        # the weight goes in as an argument, a tensor for a compiled ELBO, which then sees its changes
        scale = self._scale_tensor(args[0].device) if is_jit(self.elbo) else self.kl.scale
        return self._scaled_model, self._scaled_guide, (scale, *args)

    def _scale_tensor(self, device: torch.device) -> torch.Tensor:
        """The KL weight as a 0-dim tensor on ``device``, kept and refilled in place: a kernel
        on a GPU, not a copy from the host, which would wait for the device."""
        tensor = self._scale
        if tensor is None or tensor.device != device:
            tensor = self._scale = torch.tensor(self.kl.scale, device=device)
            self._scale_value = self.kl.scale
        elif self._scale_value != self.kl.scale:
            tensor.fill_(self.kl.scale)
            self._scale_value = self.kl.scale
        return tensor

    def _loss_gradient_and_flag(self, *args) -> tuple[torch.Tensor, list[tuple] | None, torch.Tensor | None]:
        """The loss; for a compiled ELBO its recorded gradient and non-finite flag
        (:meth:`~ppl_vae.infer.compiled.CompiledELBO.checked_loss_and_gradient`), else None and
        None: autograd's job, and the step's."""
        if not isinstance(self.elbo, CompiledELBO):
            return self.loss(*args), None, None
        model, guide, args = self._weighted(*args)
        with self._param_store():
            return self.elbo.checked_loss_and_gradient(model, guide, *args)

    def __call__(self, *args) -> float:
        """Take one step. :returns: the loss before the step (sum over the batch; over the
        global batch when distributed).

        :raises NonFiniteLossError: if the loss or a gradient is not finite; the parameters
            are then left as they were.
        """
        value, non_finite = self.take(*args).tolist()
        if non_finite:
            raise NonFiniteLossError(f"the loss is {value}" if not math.isfinite(value) else "a gradient is not finite")
        return value

    def take(self, *args) -> torch.Tensor:
        """Take one step without a transfer to the host (a fused Adam decides on the device).

        :returns: a float64 tensor of shape ``(2,)`` on the arguments' device: the loss before
            the step (as calling the step returns it), and 1 if the loss or a gradient was not
            finite, in which case the parameters and Adam's state were left as they were, else 0.
        """
        with pyro.validation_enabled(is_validation_enabled() and not self.validated):
            loss, gradients, flag = self._loss_gradient_and_flag(*args)
        self.validated = True
        if self.optimizer is None:
            self.optimizer = self._make_optimizer(*args)
        if self.distributed is None:
            if gradients is None:
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
            else:  # recorded with the loss; autograd has nothing to do
                for group in self.optimizer.param_groups:  # zero_grad(set_to_none=True), without its hooks
                    for param in group["params"]:
                        param.grad = None
                for param, grad in gradients:
                    param.grad = grad
            total = loss.detach()
            if flag is None:
                flag = step_flag(total.reshape(()), [p.grad for group in self.optimizer.param_groups
                                                     for p in group["params"] if p.grad is not None])
        else:  # every rank must reach the all-reduce, even with a non-finite loss
            self.optimizer.zero_grad(set_to_none=False)
            loss.backward()
            params = [p for group in self.optimizer.param_groups for p in group["params"]]
            for p in params:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
            grads = [p.grad for p in params]
            total = loss.detach().reshape(1).to(grads[0].dtype)
            self.distributed.all_reduce_sum_([*grads, total])
            flag = step_flag(total.reshape(()), grads)  # of the summed gradients, the same on every rank
        total = total.reshape(())
        result = torch.stack([total.double(), flag.double()])
        if is_fused(self.optimizer):
            adam_step(self.optimizer, found_inf=flag)  # skipped on the device where flag is 1
        elif not result[1]:  # other optimizers cannot skip a step on the device: one transfer
            adam_step(self.optimizer)
        return result


def _latent_scaled(fn: Callable) -> Callable:
    """``fn`` with a leading argument, the KL weight (a number or a tensor), applied to its latent sites."""
    def latent_scaled(scale: float | torch.Tensor, *args):
        with LatentScaleMessenger(scale):
            return fn(*args)
    return latent_scaled
