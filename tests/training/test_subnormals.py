"""Flushing subnormals: on the calling thread and on the worker threads created after it."""

import importlib
import subprocess
import sys

import pytest
import torch

cli_main = importlib.import_module("ppl_vae.cli.main")  # the module (ppl_vae.cli.main is also its function's name)

# A subnormal times one, on this thread (a small tensor) and across the intra-op workers (a
# large one, split among the threads); prints how many results stay non-zero.
SUBNORMAL_PRODUCTS = """
import sys, torch
from ppl_vae.training.subnormals import choose_subnormals
torch.set_num_threads(2)
print(choose_subnormals(sys.argv[1]))
tiny = torch.finfo(torch.float32).tiny / 4
small, large = torch.full((8,), tiny), torch.full((1 << 22,), tiny)
print(int((small * 1.0 != 0).sum()), int((large * 1.0 != 0).sum()))
"""


def products(mode: str) -> list[str]:
    result = subprocess.run([sys.executable, "-c", SUBNORMAL_PRODUCTS, mode], capture_output=True, text=True,
                            check=True)
    return result.stdout.split()


@pytest.mark.skipif(not torch.backends.cpu.get_cpu_capability().startswith("AVX"), reason="x86's FTZ/DAZ modes")
def test_flush_zeroes_subnormals_on_every_thread_and_keep_leaves_them():
    assert products("flush") == ["flush", "0", "0"]
    assert products("keep") == ["keep", "8", str(1 << 22)]


def test_the_command_flushes_before_it_runs(monkeypatch):
    calls = []
    monkeypatch.setattr(cli_main, "flush_subnormals", lambda: calls.append("flush") or True)
    monkeypatch.setattr(cli_main, "retain_freed_memory", lambda: True)
    with pytest.raises(SystemExit):
        cli_main.main(["check", "--help"])
    assert calls == []  # --help exits while parsing, before the process settings
    assert cli_main.main(["check", "/nonexistent/run"]) == 2
    assert calls == ["flush"]

