"""Whether a step's loss and gradients are finite, decided on the device as one 0-dim flag.

The NaN policy skips a step whose loss or gradients hold a NaN or an infinity, and it
decides without a transfer to the host: the flag is a tensor, which fused Adam reads as its
``found_inf``. The same test comes in two forms:

- :func:`step_flag`, run eagerly after the step's backward pass: one fused pass over the
  gradients (the check of torch's ``GradScaler``);
- :func:`recorded_step_flag`, plain tensor operations that a recorded graph
  (:mod:`ppl_vae.infer.compiled`) computes with the gradients, so that inductor fuses the
  test into the kernels that produce them instead of reading every gradient again.

Both are exact: the flag is 1 if and only if an element is NaN or infinite.
"""

from typing import Sequence

import torch


@torch.no_grad()
def non_finite_flag(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """1 if an element of ``tensors`` is not finite, else 0.

    One fused pass, the check of torch's ``GradScaler``
    (``_amp_foreach_non_finite_check_and_unscale_`` with a unit scale); where torch lacks it,
    the norms of the tensors.

    :param tensors: tensors on one device.
    :returns: a 0-dim float32 tensor on their device (on the CPU if there are none).
    """
    if not tensors:
        return torch.zeros(())
    found = torch.zeros((), device=tensors[0].device)
    try:
        torch._amp_foreach_non_finite_check_and_unscale_(list(tensors), found, torch.ones_like(found))
    except (AttributeError, NotImplementedError, RuntimeError):
        found = (~torch.isfinite(torch.stack(torch._foreach_norm(list(tensors)))).all()).float()
    return found


@torch.no_grad()
def step_flag(loss: torch.Tensor, grads: Sequence[torch.Tensor]) -> torch.Tensor:
    """1 if the loss or a gradient is not finite, else 0, computed eagerly.

    :param loss: the step's loss, a 0-dim tensor.
    :param grads: the gradients.
    :returns: a 0-dim float32 tensor on the loss's device.
    """
    return torch.maximum(non_finite_flag(grads).to(loss.device), (~torch.isfinite(loss)).float())


def recorded_step_flag(loss: torch.Tensor, grads: Sequence[torch.Tensor]) -> torch.Tensor:
    """:func:`step_flag` as plain tensor operations, to be recorded in a graph with the gradients.

    :param loss: the step's loss, a 0-dim tensor.
    :param grads: the gradients.
    :returns: a 0-dim float32 tensor on the loss's device.
    """
    finite = torch.isfinite(loss)
    for grad in grads:
        finite = finite & torch.isfinite(grad).all()
    return (~finite).float()
