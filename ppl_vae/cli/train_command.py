"""``ppl-vae train``: flags -> model and training configs -> a run directory (new, resumed or warm-started)."""

import argparse
import sys
from pathlib import Path

import pyro
import torch

from ppl_vae.models.config import CONDITIONALS, ModelConfig, build_pair
from ppl_vae.training.checkpoints import CheckpointError, warm_start
from ppl_vae.cli.arguments import (
    UsageError,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)
from ppl_vae.models.quadrants import QUADRANT_LAYOUTS, VISIBLE_QUADRANTS
from ppl_vae.models.registry import MODELS
from ppl_vae.data.datasets import DATASETS, load_dataset
from ppl_vae.training.device import resolve_device
from ppl_vae.training.distributed import init_distributed, on_main, shutdown
from ppl_vae.guides import GUIDES
from ppl_vae.guides.flow import PERMUTATIONS
from ppl_vae.nn.likelihoods import LIKELIHOODS
from ppl_vae.training.schedules import LR_SCHEDULES
from ppl_vae.nn.networks import ACTIVATIONS, NETWORKS
from ppl_vae.cli.run_directory import new_run_dir, read_config
from ppl_vae.infer.svi_step import ELBOS, TrainConfig
from ppl_vae.cli.training_run import (
    CheckpointOptions,
    resumable,
    run_training,
    write_run_config,
)
from ppl_vae.training.trainer import ON_NAN


def add_train_parser(subparsers) -> None:
    p = subparsers.add_parser("train", help="train a VAE with SVI and Trace_ELBO")
    p.add_argument("--dataset", default="mnist-sample", choices=DATASETS, metavar="NAME",
                   help=f"one of {', '.join(DATASETS)} (default: mnist-sample, shipped with the package)")
    p.add_argument("--data-dir", default="data", help="torchvision's data folder (default: ./data)")
    p.add_argument("--network", default="mlp", choices=NETWORKS, help="encoder/decoder family (default: mlp)")
    p.add_argument("--hidden-dims", type=positive_int, nargs="+", default=(400,),
                   help="hidden widths of the encoder; the decoder mirrors them (default: 400)")
    p.add_argument("--activation", default="relu", choices=tuple(ACTIVATIONS), metavar="NAME",
                   help=f"one of {', '.join(ACTIVATIONS)} (default: relu)")
    p.add_argument("--z-dim", type=positive_int, default=20, help="latent dimension (default: 20)")
    p.add_argument("--likelihood", default="auto", choices=("auto", *LIKELIHOODS), metavar="NAME",
                   help=f"auto or one of {', '.join(LIKELIHOODS)}; auto is bernoulli for binary data, "
                   "else continuous-bernoulli")
    p.add_argument("--guide", default="diag", choices=tuple(GUIDES), metavar="NAME",
                   help=f"one of {', '.join(GUIDES)} (default: diag)")
    flows = p.add_argument_group("flow guides (planar, iaf)")
    flows.add_argument("--num-flows", type=positive_int, default=None,
                       help="flow steps (default: 2 for iaf, 8 for planar)")
    flows.add_argument("--flow-hidden-dims", type=positive_int, nargs="+", default=None,
                       help="hidden widths of each step's network")
    flows.add_argument("--context-dim", type=positive_int, default=None, help="width of the context h(x)")
    flows.add_argument("--stable", action="store_true", help="iaf: the sigmoid ('stable') update")
    flows.add_argument("--permutation", default=None, choices=PERMUTATIONS,
                       help="order of the coordinates between steps (default: reverse for iaf, none for planar)")
    conditional = p.add_argument_group("conditional models")
    conditional.add_argument("--conditional", default="none", choices=CONDITIONALS,
                             help="label: p(x|z,y) with class labels; quadrants: complete MNIST digits")
    conditional.add_argument("--learned-prior", action="store_true", help="label: learn p(z|y)")
    conditional.add_argument("--visible-quadrants", type=int, choices=VISIBLE_QUADRANTS, default=None,
                             help="quadrants: how many quadrants are visible (default 2)")
    conditional.add_argument("--quadrant-layout", default=None, choices=QUADRANT_LAYOUTS,
                             help="quadrants: pyro (default; generation net on z, recognition net on the filled-in "
                                  "digit) or visible (generation net also sees x_visible)")
    runs = p.add_argument_group("checkpoints and faults")
    runs.add_argument("--resume", type=Path, default=None, metavar="RUN_DIR",
                      help="go on from the run's newest good checkpoint (its settings are the run's; --epochs "
                      "gives it a new budget, except under a scaled --lr-schedule)")
    runs.add_argument("--init-from", type=Path, default=None, metavar="RUN",
                      help="start from the weights of a finished run (a run directory or checkpoint file) with the "
                      "same model and guide options; the optimizer and schedule start afresh")
    runs.add_argument("--checkpoint-every-steps", type=non_negative_int, default=0,
                      help="also checkpoint every N steps (default: at each epoch's end only)")
    runs.add_argument("--checkpoint-every-seconds", type=non_negative_float, default=600.0,
                      help="also checkpoint when this many seconds have passed (default 600; 0: off)")
    runs.add_argument("--keep-checkpoints", type=positive_int, default=2, help="newest checkpoints kept")
    runs.add_argument("--on-nan", default="stop", choices=ON_NAN,
                      help="at a non-finite loss or gradient: stop (naming the site) or skip the step")
    runs.add_argument("--max-skipped", type=positive_int, default=100, help="skip: give up after N in a row")
    p.add_argument("--elbo", default="trace", choices=tuple(ELBOS),
                   help="trace (Trace_ELBO), mean-field (TraceMeanField_ELBO) or iwae (the importance-weighted bound "
                   "of Burda et al. with K = --num-particles)")
    p.add_argument("--num-particles", type=positive_int, default=1, help="samples of z per datapoint and step")
    p.add_argument("--jit", action="store_true",
                   help="record the ELBO and its gradient once as a graph and replay it (ppl_vae.infer.compiled): same loss and "
                   "draws, faster steps; for models without data-dependent control flow")
    p.add_argument("--epochs", type=positive_int, default=None,
                   help="passes over the training split (default 10); with --resume, a new budget for the run")
    p.add_argument("--batch-size", type=positive_int, default=128)
    p.add_argument("--lr", type=positive_float, default=1e-3, help="Adam's learning rate")
    p.add_argument("--beta", type=positive_float, default=1.0, help="KL weight (beta-VAE); 1 is the ELBO")
    p.add_argument("--warmup-epochs", type=non_negative_float, default=0.0, help="linear KL warm-up length")
    p.add_argument("--validation-size", type=non_negative_int, default=0,
                   help="hold out the last N training datapoints as a validation split (default 0; "
                   "binarized-mnist-static has its own)")
    p.add_argument("--patience", type=non_negative_int, default=0,
                   help="early stopping: stop when the validation ELBO (with --elbo iwae, the IWAE bound) has not "
                   "improved for N epochs and keep the best epoch (default 0: off)")
    p.add_argument("--lr-decay", type=positive_float, default=1.0, metavar="FACTOR",
                   help="multiply the learning rate by FACTOR in (0, 1] when the validation bound has not "
                   "improved for --lr-patience epochs (default 1: off)")
    p.add_argument("--lr-patience", type=non_negative_int, default=3, help="epochs before each decay (default 3)")
    p.add_argument("--lr-schedule", default="constant", choices=LR_SCHEDULES,
                   help="burda: Burda et al.'s decay in 8 stages to a tenth of --lr, lasting 1, 3, 9, ... 2187 "
                   "parts of 3280 of --epochs (default constant)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda or cuda:N")
    p.add_argument("--out", type=Path, default=None, help="run directory (default: results/runs/<time>-<dataset>-<guide>)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=cmd_train)


def check_data(likelihood, data) -> None:
    """Raise UsageError if the training data lie outside the likelihood's support."""
    x = data.train
    if data.binarize:
        if not (torch.isfinite(x).all() and ((x >= 0) & (x <= 1)).all()):
            raise UsageError(f"dataset {data.name!r} has values outside [0, 1] or NaN; it cannot be binarized")
        x = torch.bernoulli(x[:1000])
    problem = likelihood.support_problem(x)
    if problem is not None:
        raise UsageError(f"dataset {data.name!r}: {problem}")


def guide_options(args: argparse.Namespace) -> dict:
    """The guide's own options from the flags; flow flags with a non-flow guide are an error."""
    given = {"num_flows": args.num_flows, "hidden_dims": args.flow_hidden_dims, "context_dim": args.context_dim,
             "stable": args.stable or None, "permutation": args.permutation}
    given = {key: value for key, value in given.items() if value is not None}
    if args.guide not in ("planar", "iaf"):
        if given:
            raise UsageError(f"--{next(iter(given)).replace('_', '-')} is an option of the flow guides (planar, iaf), "
                             f"not of {args.guide!r}")
        return {}
    if args.guide == "planar" and "stable" in given:
        raise UsageError("--stable is an option of the iaf guide only")
    if "hidden_dims" in given:
        given["hidden_dims"] = tuple(given["hidden_dims"])
    return given


def model_config(args: argparse.Namespace, data) -> ModelConfig:
    """The model config from the flags and the dataset; a model's own flags need that model."""
    entry = MODELS[args.conditional]
    given = {"learned_prior": args.learned_prior or None, "visible_quadrants": args.visible_quadrants,
             "quadrant_layout": args.quadrant_layout}
    for name, value in given.items():
        if value is not None and name not in entry.options:
            owner = next(model for model, other in MODELS.items() if name in other.options)
            raise UsageError(f"--{name.replace('_', '-')} needs --conditional {owner}")
    entry.check_data(data)
    options = {**(entry.defaults or {}), **{k: v for k, v in given.items() if v is not None}}
    if "num_classes" in entry.options:
        options["num_classes"] = data.num_classes
    likelihood = args.likelihood
    if likelihood == "auto":
        likelihood = "bernoulli" if data.is_binary else entry.grayscale_likelihood
    return ModelConfig(
        event_shape=data.event_shape, z_dim=args.z_dim, network=args.network, hidden_dims=tuple(args.hidden_dims),
        activation=args.activation, likelihood=likelihood, guide=args.guide, guide_options=guide_options(args),
        conditional=args.conditional, **options,
    )


def cmd_train(args: argparse.Namespace) -> int:
    distributed = init_distributed(resolve_device(args.device))
    try:
        if args.resume is not None:
            return cmd_resume(args, distributed)
        return cmd_train_new(args, distributed)
    finally:
        shutdown(distributed)


def distributed_settings(distributed, train_config: TrainConfig) -> dict:
    """The data-parallel settings recorded in the run's config (and printed by rank 0)."""
    if distributed is None:
        return {"world_size": 1}
    settings = {"world_size": distributed.world_size, "backend": distributed.backend,
                "global_batch_size": train_config.batch_size,
                "per_rank_batch_size": -(-train_config.batch_size // distributed.world_size), "lr": train_config.lr}
    if distributed.is_main:
        print(f"distributed: {distributed.world_size} processes ({distributed.backend}), global batch "
              f"{settings['global_batch_size']} ({settings['per_rank_batch_size']} per rank at most), "
              f"lr {train_config.lr:g}", file=sys.stderr)
    return settings


def build_on_device(config: ModelConfig, seed: int, device, distributed):
    """The model/guide pair, initialized from the seed (and identical on every rank)."""
    pyro.set_rng_seed(seed)  # the initial weights too follow the seed
    model, guide = build_pair(config)
    model, guide = model.to(device), guide.to(device)
    if distributed is not None:
        distributed.broadcast_module_(model)
        distributed.broadcast_module_(guide)
    return model, guide


def cmd_train_new(args: argparse.Namespace, distributed) -> int:
    device = distributed.device if distributed is not None else resolve_device(args.device)
    if args.lr_decay > 1:
        raise UsageError(f"--lr-decay must be in (0, 1] (1: off), got {args.lr_decay}")
    if args.lr_schedule != "constant" and args.lr_decay < 1:
        raise UsageError(f"--lr-schedule {args.lr_schedule} and --lr-decay exclude each other; choose one")
    if args.jit and distributed is not None:
        raise UsageError("--jit does not support data-parallel training (torchrun); run without --jit")
    data = load_dataset(args.dataset, args.data_dir, device, args.validation_size)
    for flag, used in (("--patience", args.patience), ("--lr-decay", args.lr_decay < 1)):
        if used and data.valid is None:
            raise UsageError(f"{flag} needs a validation split; {args.dataset!r} has none: pass --validation-size N "
                             "(e.g. 10000 for the MNIST family)")
    config = model_config(args, data)
    model, guide = build_on_device(config, args.seed, device, distributed)
    try:
        init_from = warm_start(args.init_from, model, guide, config) if args.init_from is not None else None
    except CheckpointError as error:
        raise UsageError(f"--init-from: {error}") from None
    check_data(model.likelihood, data)
    train_config = TrainConfig(
        epochs=args.epochs or 10, batch_size=args.batch_size, lr=args.lr, elbo=args.elbo,
        num_particles=args.num_particles, beta=args.beta, warmup_epochs=args.warmup_epochs, seed=args.seed,
        patience=args.patience, lr_decay=args.lr_decay, lr_patience=args.lr_patience,
        lr_schedule=args.lr_schedule, jit=args.jit,
    )
    options = CheckpointOptions(args.checkpoint_every_steps, args.checkpoint_every_seconds, args.keep_checkpoints,
                                args.on_nan, args.max_skipped)
    run_config = {"dataset": args.dataset, "data_dir": str(args.data_dir), "validation_size": args.validation_size,
                  "device": str(device), "model": config.to_dict(), "train": train_config.to_dict(),
                  "checkpoints": options.to_dict(), "distributed": distributed_settings(distributed, train_config)}
    if init_from is not None:
        run_config["init_from"] = init_from

    def create_run_dir() -> Path:
        out = new_run_dir(args.out, args.dataset, args.guide)
        write_run_config(out, run_config)
        return out

    out = on_main(distributed, create_run_dir)
    return run_training(out, model, guide, config, data, train_config, options, not args.no_progress,
                        distributed=distributed)


def cmd_resume(args: argparse.Namespace, distributed) -> int:
    """``ppl-vae train --resume RUN_DIR``: go on from the run's newest good checkpoint."""
    if args.init_from is not None:
        raise UsageError("--init-from starts a new run; --resume goes on from the run's own checkpoint (drop one)")
    run_config = read_config(args.resume)
    config, train_config, options = resumable(run_config)
    if (args.resume / "checkpoint.pt").exists():
        print(f"{args.resume} is a finished run; nothing to resume", file=sys.stderr)
        return 0
    if args.epochs is not None and args.epochs != train_config.epochs:  # a new budget (recorded in config.json)
        if train_config.lr_schedule != "constant":
            raise UsageError(f"--epochs cannot change on --resume with --lr-schedule {train_config.lr_schedule}: "
                             "the schedule is scaled to the run's epochs")
        run_config.setdefault("epochs_changed", []).append({"from": train_config.epochs, "to": args.epochs})
        run_config["train"]["epochs"] = train_config.epochs = args.epochs
        if distributed is None or distributed.is_main:
            write_run_config(args.resume, run_config)
    device = distributed.device if distributed is not None else resolve_device(args.device)
    data = load_dataset(run_config["dataset"], run_config.get("data_dir", "data"), device,
                        run_config.get("validation_size", 0))
    distributed_settings(distributed, train_config)
    model, guide = build_on_device(config, train_config.seed, device, distributed)
    started = any((args.resume / "checkpoints").glob("train-*.pt"))
    if not started and "init_from" in run_config:
        warm_start(run_config["init_from"]["path"], model, guide, config)
    if not started and (distributed is None or distributed.is_main):  # nothing was saved: start over
        print(f"{args.resume} has no checkpoint yet; starting it over", file=sys.stderr)
    return run_training(args.resume, model, guide, config, data, train_config, options, not args.no_progress,
                        resume=started, distributed=distributed)
