"""The package's public surface: every exported name resolves, old module paths still import."""

import importlib
import subprocess
import sys

import pytest

import ppl_vae


@pytest.mark.parametrize("name", ppl_vae.__all__)
def test_every_exported_name_resolves(name: str) -> None:
    assert getattr(ppl_vae, name) is not None


@pytest.mark.parametrize("old", sorted(ppl_vae.MOVED_MODULES))
def test_old_module_paths_import_with_a_deprecation_warning(old: str) -> None:
    sys.modules.pop(f"ppl_vae.{old}", None)
    with pytest.warns(DeprecationWarning, match=f"ppl_vae.{old} is deprecated"):
        module = importlib.import_module(f"ppl_vae.{old}")
    assert [name for name in dir(module) if not name.startswith("_")]


def test_the_readme_imports_of_the_flat_layout_still_work() -> None:
    for old in ("cvae", "train", "trainer"):
        sys.modules.pop(f"ppl_vae.{old}", None)
    with pytest.warns(DeprecationWarning):
        from ppl_vae.cvae import QuadrantCVAE, one_hot  # noqa: F401
        from ppl_vae.train import TrainConfig, make_elbo  # noqa: F401
        from ppl_vae.trainer import Trainer, fit  # noqa: F401


def test_importing_the_package_and_its_launcher_loads_no_torch() -> None:
    code = "import sys, ppl_vae, ppl_vae.__main__; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
