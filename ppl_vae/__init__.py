"""ppl_vae: variational autoencoders written as Pyro programs.

The model p(z) p(x|z) and the guide q(z|x) are ``nn.Module``s whose ``forward`` is a
Pyro program; they train with ``pyro.infer.SVI`` and ``Trace_ELBO`` or with the
library's faster, equivalent :func:`ppl_vae.fit` (or the resumable :class:`ppl_vae.Trainer`).
"""

import importlib
import importlib.abc
import importlib.util
import sys
import types
import warnings

# The public names and the modules that hold them, imported on first use (PEP 562), so that
# ``import ppl_vae.cli`` and the ``ppl-vae`` launcher start before torch and Pyro are loaded.
EXPORTS = {
    "Dataset": "data", "load_dataset": "data",
    "GUIDES": "guides", "AmortizedGuide": "guides", "DiagonalNormalGuide": "guides", "make_guide": "guides",
    "CompiledIWAE_ELBO": "infer.compiled", "CompiledTrace_ELBO": "infer.compiled",
    "CompiledTraceMeanField_ELBO": "infer.compiled", "IWAE_ELBO": "infer.iwae",
    "LatentScaleMessenger": "infer.latent_scale", "make_elbo": "infer.elbos", "SVIStep": "infer.svi_step",
    "make_svi_step": "infer.auto_compile",
    "ModelConfig": "models.config", "build_pair": "models.config", "VAE": "models.vae",
    "LIKELIHOODS": "nn.likelihoods", "make_likelihood": "nn.likelihoods",
    "ConvDecoder": "nn.networks", "ConvEncoder": "nn.networks", "MLPDecoder": "nn.networks",
    "MLPEncoder": "nn.networks", "make_networks": "nn.networks",
    "evaluate_elbo": "training.evaluation", "load_pair": "training.checkpoints",
    "save_checkpoint": "training.checkpoints", "CheckpointOptions": "training.config",
    "TrainConfig": "training.config", "Trainer": "training.trainer", "fit": "training.trainer",
}


def __getattr__(name: str):
    if name not in EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *EXPORTS])


__version__ = "0.1.0"

__all__ = sorted(EXPORTS)

# The flat layout's module paths, each now a module of a layer: ``import ppl_vae.jit`` still
# works, with a DeprecationWarning naming the new path.
#: The flat layout's module names and the modules that now hold their code.
MOVED_MODULES = {
    "bernoulli": "distributions.bernoulli", "build": "models.config", "check": "infer.agreement",
    "checkpoint": "training.checkpoints", "cli_args": "cli.arguments", "cli_evaluate": "cli.evaluate_commands",
    "cli_train": "cli.train_command", "cvae": ("models.conditional", "models.quadrants"), "device": "training.device",
    "diagnose": "infer.diagnose", "distributed": "training.distributed", "elbo": "infer.closed_form",
    "evaluate": "infer.importance", "figures": "cli.figures", "fx_graphs": "infer.graph_passes",
    "iwae": "infer.iwae", "jit": "infer.compiled", "kl_scale": "infer.latent_scale",
    "likelihoods": "nn.likelihoods", "linear_gaussian": "models.linear_gaussian", "lr_schedule": "training.schedules",
    "memory": "training.memory", "nets": "nn.networks", "noise": "infer.noise", "registration": "nn.registration",
    "rng": "training.rng_state", "run_dir": "cli.run_directory", "train": ("infer.svi_step", "infer.elbos", "training.config"),
    "train_run": ("cli.training_run", "training.config"), "trainer": ("training.trainer", "training.config"),
}


class _MovedModuleLoader(importlib.abc.Loader):
    """Loads an old module path as the module that now holds its code."""

    def __init__(self, old: str, new: str | tuple[str, ...]) -> None:
        self.old, self.new = old, new

    def create_module(self, spec):
        news = (self.new,) if isinstance(self.new, str) else self.new
        warnings.warn(f"{self.old} is deprecated; import {' or '.join(news)} instead", DeprecationWarning,
                      stacklevel=2)
        if len(news) == 1:
            return importlib.import_module(news[0])
        merged = types.ModuleType(self.old)  # a module split in two: the names of both
        for new in news:
            merged.__dict__.update({k: v for k, v in vars(importlib.import_module(new)).items() if not k.startswith("__")})
        return merged

    def exec_module(self, module) -> None:
        pass


class _MovedModuleFinder(importlib.abc.MetaPathFinder):
    """Finds the flat layout's module paths (:data:`MOVED_MODULES`)."""

    def find_spec(self, fullname: str, path=None, target=None):
        prefix, _, name = fullname.partition(".")
        if prefix != __name__ or name not in MOVED_MODULES:
            return None
        new = MOVED_MODULES[name]
        new = f"{__name__}.{new}" if isinstance(new, str) else tuple(f"{__name__}.{n}" for n in new)
        return importlib.util.spec_from_loader(fullname, _MovedModuleLoader(fullname, new))


if not any(isinstance(finder, _MovedModuleFinder) for finder in sys.meta_path):
    sys.meta_path.append(_MovedModuleFinder())
