"""The flags of ``ppl-vae train`` that choose the model, its guide and its prior, and the
:class:`~ppl_vae.models.config.ModelConfig` they build.

Each model, guide and prior's own options are flags of their own; giving one to a model,
guide or prior that does not take it is a one-line error that names the owner. The values
themselves are validated by ``ModelConfig``.
"""

import argparse

from ppl_vae.cli.arguments import UsageError
from ppl_vae.cli.config_file import FLAGS, flag_of
from ppl_vae.guides import GUIDES
from ppl_vae.guides.flow import PERMUTATIONS
from ppl_vae.guides.registry import FLOW_GUIDES
from ppl_vae.models.config import ModelConfig, resolve_model
from ppl_vae.models.quadrants import QUADRANT_LAYOUTS, VISIBLE_QUADRANTS
from ppl_vae.models.registry import MODELS
from ppl_vae.nn.likelihoods import LIKELIHOODS
from ppl_vae.nn.networks import ACTIVATIONS, NETWORKS
from ppl_vae.priors import PRIORS

M = ModelConfig  # its defaults, shown in the help


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """The model, guide and prior flags (absent unless given: the config's defaults apply)."""
    p.add_argument("--network", choices=NETWORKS, help=f"encoder/decoder family (default: {M.network})")
    p.add_argument("--hidden-dims", type=int, nargs="+",
                   help=f"hidden widths of the encoder; the decoder mirrors them (default: {M.hidden_dims})")
    p.add_argument("--activation", choices=tuple(ACTIVATIONS), metavar="NAME",
                   help=f"one of {', '.join(ACTIVATIONS)} (default: {M.activation})")
    p.add_argument("--z-dim", type=int, help=f"latent dimension (default: {M.z_dim})")
    p.add_argument("--likelihood", default="auto", choices=("auto", *LIKELIHOODS), metavar="NAME",
                   help=f"auto or one of {', '.join(LIKELIHOODS)}; auto is bernoulli for binary data, "
                   "else the model's grayscale likelihood (continuous-bernoulli)")
    p.add_argument("--model", choices=tuple(MODELS), metavar="NAME",
                   help=f"one of {', '.join(MODELS)} (default: {M.model}; hierarchical: Burda et al.'s two "
                   "stochastic layers)")
    p.add_argument("--guide", choices=tuple(GUIDES), metavar="NAME",
                   help=f"one of {', '.join(GUIDES)} (default: {M.guide})")
    flows = p.add_argument_group("flow guides (planar, iaf)")
    flows.add_argument("--num-flows", type=int, help="flow steps (default: 2 for iaf, 8 for planar)")
    flows.add_argument("--flow-hidden-dims", type=int, nargs="+", help="hidden widths of each step's network")
    flows.add_argument("--context-dim", type=int, help="width of the context h(x)")
    flows.add_argument("--stable", action=argparse.BooleanOptionalAction, help="iaf: the sigmoid ('stable') update")
    flows.add_argument("--permutation", choices=PERMUTATIONS,
                       help="order of the coordinates between steps (default: reverse for iaf, none for planar)")
    conditional = p.add_argument_group("conditional models")
    conditional.add_argument("--conditional", choices=("none", *(n for n, e in MODELS.items() if e.conditional)),
                             help="a conditional model, as --model NAME does: label: p(x|z,y) with class labels; "
                             "quadrants: complete MNIST digits")
    conditional.add_argument("--learned-prior", action=argparse.BooleanOptionalAction, help="label: learn p(z|y)")
    conditional.add_argument("--visible-quadrants", type=int, choices=VISIBLE_QUADRANTS,
                             help="quadrants: how many quadrants are visible (default 2)")
    conditional.add_argument("--quadrant-layout", choices=QUADRANT_LAYOUTS,
                             help="quadrants: pyro (default; generation net on z, recognition net on the filled-in "
                                  "digit) or visible (generation net also sees x_visible)")
    conditional.add_argument("--labels", type=int,
                             help="semi-supervised: labelled training images, balanced over the classes (default 3000)")
    conditional.add_argument("--labelled-every", type=int, metavar="K",
                             help="semi-supervised: one training batch in K is labelled, cycling through the "
                             "labelled images (default 0: each labelled image once per epoch, as in Pyro's example)")
    conditional.add_argument("--aux-loss-multiplier", type=float,
                             help="semi-supervised: weight of log q(y|x) on labelled batches "
                             f"(default {M.aux_loss_multiplier:g})")
    priors = p.add_argument_group("priors")
    priors.add_argument("--prior", choices=tuple(PRIORS), metavar="NAME",
                        help=f"p(z) of the (top) latent layer: one of {', '.join(PRIORS)} (default: {M.prior})")
    priors.add_argument("--num-components", type=int, help="mixture: K Gaussians (default 10)")
    priors.add_argument("--num-pseudo-inputs", type=int, help="vamp: K pseudo-inputs (default 500)")
    priors.add_argument("--prior-flows", type=int, help="flow: masked autoregressive steps (default 2)")
    priors.add_argument("--prior-hidden-dims", type=int, nargs="+", help="flow: hidden widths of each step's MADE")
    layers = p.add_argument_group("hierarchical model")
    layers.add_argument("--z-dims", type=int, nargs="+", help=f"latent sizes from the data up (default: {M.z_dims})")
    layers.add_argument("--layer-widths", type=int, nargs="+",
                        help=f"width of the two deterministic layers below each latent layer (default: {M.layer_widths})")
    layers.add_argument("--layer-guides", nargs="+", metavar="NAME",
                        help="the guide of each latent layer, from the data up (default: --guide on each)")


def given(args: argparse.Namespace, section: str) -> dict:
    """The settings of one section of the configs that the flags (or the config file) gave."""
    return {key: getattr(args, flag) for flag, (where, key) in FLAGS.items() if where == section and hasattr(args, flag)}


def guide_options(args: argparse.Namespace, guides: tuple[str, ...]) -> dict:
    """The guides' own options from the flags; flow flags without a flow guide are an error.

    :param guides: the guides in use (the hierarchical model's layers may differ).
    """
    options = {key: value for key, value in given(args, "model.guide_options").items() if value is not None}
    options = {key: value for key, value in options.items() if not (key == "stable" and value is False)}
    if not set(guides) & set(FLOW_GUIDES):
        if options:
            raise UsageError(f"{flag_of('model.guide_options', next(iter(options)))} is an option of the flow guides "
                             f"({', '.join(FLOW_GUIDES)}), not of {' or '.join(map(repr, dict.fromkeys(guides)))}")
        return {}
    if "iaf" not in guides and "stable" in options:
        raise UsageError("--stable is an option of the iaf guide only")
    if "hidden_dims" in options:
        options["hidden_dims"] = tuple(options["hidden_dims"])
    return options


def prior_options(args: argparse.Namespace) -> dict:
    """The prior's own options from the flags (``ModelConfig`` checks that they are the prior's)."""
    options = given(args, "model.prior_options")
    if "hidden_dims" in options:
        options["hidden_dims"] = tuple(options["hidden_dims"])
    return options


def train_settings(args: argparse.Namespace) -> dict:
    """The training settings the flags gave, with the chosen model's default objective when
    ``--elbo`` is not given.

    :raises UsageError: for an objective the model does not take.
    """
    settings = given(args, "model")
    name = resolve_model(settings.get("model", M.model), settings.get("conditional"))
    elbos = MODELS[name].elbos
    train = {"elbo": elbos[0], **given(args, "train")}
    if train["elbo"] not in elbos:
        reason = (" (the guide's layers depend on each other's draws, which biases its analytic KL)"
                  if train["elbo"] == "mean-field" else "")
        raise UsageError(f"--elbo {train['elbo']} does not fit --model {name}{reason}; choose from {', '.join(elbos)}")
    return train


def model_config(args: argparse.Namespace, data) -> ModelConfig:
    """The model config from the flags and the dataset; a model's own options need that model."""
    settings = given(args, "model")
    name = resolve_model(settings.pop("model", M.model), settings.pop("conditional", None))
    entry = MODELS[name]
    for option in sorted({option for other in MODELS.values() for option in other.options}):
        if settings.get(option, getattr(M, option)) not in (None, getattr(M, option)) and option not in entry.options:
            owner, other = next((model, other) for model, other in MODELS.items() if option in other.options)
            raise UsageError(f"{flag_of('model', option)} needs --{'conditional' if other.conditional else 'model'} {owner}")
    for option in entry.unused:
        if option in settings:
            raise UsageError(f"{flag_of('model', option)} is not an option of --model {name}; "
                             f"its own are {', '.join(flag_of('model', o) for o in entry.options)}")
    entry.check_data(data)
    settings = {**(entry.defaults or {}), **{k: v for k, v in settings.items() if v is not None}}
    settings.update(entry.from_data(data))
    if settings.get("likelihood", "auto") == "auto":
        settings["likelihood"] = "bernoulli" if data.is_binary else entry.grayscale_likelihood
    guides = tuple(settings.get("layer_guides") or ()) or (settings.get("guide", M.guide),)
    return ModelConfig(event_shape=data.event_shape, model=name, guide_options=guide_options(args, guides),
                       prior_options=prior_options(args), **settings)


