"""Test seam: ``python tests/fault_injection.py ARGS`` is ``ppl-vae ARGS`` with a fault injected.

The environment variable ``PPL_VAE_FAULT=kill:N`` (or ``term:N``) makes the training run send
its own process SIGKILL (or SIGTERM) right after global step N of the main fit; unset or
empty, nothing is injected. It wraps :func:`ppl_vae.cli.training_run.run_training` from the
outside, so the library's run path holds no fault-injection code. Works under torchrun too
(``torchrun ... tests/fault_injection.py train ...``), with a fault per rank through each
rank's environment.
"""

import os
import signal
import sys

import ppl_vae.cli.train_command as train_command
from ppl_vae.cli import main

SIGNALS = {"kill": signal.SIGKILL, "term": signal.SIGTERM}


def with_fault(run_training, spec: str):
    kind, at = spec.split(":")

    def after_step(step: int) -> None:
        if step == int(at):
            os.kill(os.getpid(), SIGNALS[kind])

    def run_training_with_fault(*args, **kwargs):
        return run_training(*args, after_step=after_step, **kwargs)

    return run_training_with_fault


if __name__ == "__main__":
    spec = os.environ.get("PPL_VAE_FAULT")
    if spec:
        train_command.run_training = with_fault(train_command.run_training, spec)
    sys.exit(main(sys.argv[1:]))
