"""Test seam: ``python tests/fault_injection.py ARGS`` is ``ppl-vae ARGS`` with a fault injected.

The environment variable ``PPL_VAE_FAULT`` says what to inject; unset or empty, nothing is:

- ``kill:N`` or ``term:N``: the training run sends its own process SIGKILL (or SIGTERM) right
  after global step N of the main fit;
- ``stall:N``: after step N the run sleeps (holding its run directory) until it is killed;
- ``term:final``: SIGTERM when the last epoch is done, as the final files are written.

It wraps :func:`ppl_vae.cli.training_run.run_training` from the outside, so the library's
run path holds no fault-injection code. It works under torchrun too
(``torchrun ... tests/fault_injection.py train ...``), with a fault per rank through each
rank's environment.
"""

import os
import signal
import sys
import time

from ppl_vae.__main__ import install_stop_handlers

SIGNALS = {"kill": signal.SIGKILL, "term": signal.SIGTERM}


def with_fault(run_training, spec: str):
    kind, at = spec.split(":")
    if at == "final":
        import ppl_vae.cli.training_run as training_run

        plot_curves = training_run.plot_curves

        def signalled_plot_curves(*args, **kwargs):
            os.kill(os.getpid(), SIGNALS[kind])
            return plot_curves(*args, **kwargs)

        training_run.plot_curves = signalled_plot_curves
        return run_training

    def after_step(step: int) -> None:
        if step == int(at):
            if kind == "stall":
                time.sleep(600)
            os.kill(os.getpid(), SIGNALS[kind])

    def run_training_with_fault(*args, **kwargs):
        return run_training(*args, after_step=after_step, **kwargs)

    return run_training_with_fault


if __name__ == "__main__":
    install_stop_handlers()  # before torch is imported, as the ppl-vae command does
    import ppl_vae.cli.train_command as train_command
    from ppl_vae.cli import main

    spec = os.environ.get("PPL_VAE_FAULT")
    if spec:
        train_command.run_training = with_fault(train_command.run_training, spec)
    sys.exit(main(sys.argv[1:]))
