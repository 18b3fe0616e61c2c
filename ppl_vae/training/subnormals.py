"""Flush float subnormals to zero in the training process: Adam's moments cross that range.

Adam keeps, per parameter, a first moment ``m`` that decays by ``beta1`` (0.9) at every
step its gradient is zero. On MNIST the weights that read the border pixels, which almost
every image leaves at 0, get a non-zero gradient only now and then; each time, their ``m``
then decays geometrically, and about 800 steps later it passes through float32's subnormal
range (below 1.2e-38) for some 150 steps before it reaches 0. x86 CPUs compute with
subnormal operands through a slow microcode path, so the fused Adam step slows down as
training goes on: for the 784-400-20 VAE at batch 128 on this project's 2-core CPU it took
three times as long after 1,000 steps as after 11 (torch.profiler, 50 steps each), and a
whole training step of the plain PyTorch loop and of the inductor-compiled one took 20%
longer (``scripts/bench_train.py`` measures every method after the same number of steps).

:func:`flush_subnormals` turns on the CPU's flush-to-zero and denormals-are-zero modes
(``torch.set_flush_denormal``): subnormal results become 0 and subnormal inputs read as
0. Numbers below 1.2e-38 carry nothing a VAE's objective or its gradients can see. The mode
belongs to each thread, and the intra-op worker threads take it from the thread that
creates them, so it must be set before the first parallel operation; set later, the
workers that already exist keep computing with subnormals. The ``ppl-vae`` command sets it
first thing, as it sets the allocator (:mod:`ppl_vae.training.memory`); importing the
library does not, since the float mode is the whole process's business. A script that
calls :func:`~ppl_vae.training.trainer.fit` can call :func:`flush_subnormals` at its top.
"""

import torch

#: The benchmarks' ``--subnormals`` choices: ``flush`` (what ``ppl-vae`` does) or ``keep``.
SUBNORMAL_MODES = ("flush", "keep")


def flush_subnormals() -> bool:
    """Treat float subnormals as zero in this thread and in the worker threads created after it.

    :returns: True if the CPU supports the mode (x86 with SSE3), False where nothing changed.
    """
    return torch.set_flush_denormal(True)


def choose_subnormals(mode: str) -> str:
    """Apply a :data:`SUBNORMAL_MODES` choice. :returns: the mode in effect (``"keep"`` where
    ``"flush"`` was asked of a CPU without it)."""
    return "flush" if mode == "flush" and flush_subnormals() else "keep"
