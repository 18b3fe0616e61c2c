"""``ppl-vae train``: flags (or ``--config FILE``) -> model, training and checkpoint configs -> a run directory.

The flags map one to one onto the fields of :class:`~ppl_vae.models.config.ModelConfig`,
:class:`~ppl_vae.training.config.TrainConfig` and
:class:`~ppl_vae.training.config.CheckpointOptions` (:data:`ppl_vae.cli.config_file.FLAGS`).
A flag that is not given is absent (``argparse.SUPPRESS``), so the configs' own defaults
apply and are written nowhere else, and the configs validate the values.
"""

import argparse
import sys
from contextlib import ExitStack
from pathlib import Path

import pandas as pd
import pyro
import torch

from ppl_vae.cli.arguments import UsageError, non_negative_int
from ppl_vae.cli.config_file import flag_of_field
from ppl_vae.cli.model_flags import add_model_arguments, given, model_config, train_settings
from ppl_vae.cli.run_directory import labelled_data, new_run_dir, read_config, run_configs
from ppl_vae.cli.run_lock import RunLock, hold
from ppl_vae.cli.training_run import run_training, write_run_config
from ppl_vae.data import DATASETS, load_dataset
from ppl_vae.infer.elbos import COMPILE_MODES, ELBOS
from ppl_vae.models.config import ConfigError, ModelConfig, build_pair
from ppl_vae.training.checkpoints import CheckpointError, warm_start
from ppl_vae.training.config import (
    ON_NAN,
    CheckpointOptions,
    TrainConfig,
    check_trainable,
    initialize_output_bias,
)
from ppl_vae.training.device import resolve_device
from ppl_vae.training.distributed import init_distributed
from ppl_vae.training.footprint import check_fits
from ppl_vae.training.schedules import LR_SCHEDULES
from ppl_vae.training.tensorboard import require_tensorboard

T, C, M = TrainConfig, CheckpointOptions, ModelConfig  # their defaults, shown in the help


def add_train_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("train", help="train a VAE with SVI and Trace_ELBO", argument_default=argparse.SUPPRESS)
    p.add_argument("--config", type=Path, metavar="FILE",
                   help="read settings from a TOML, YAML or JSON file (a run's config.json works); flags override it")
    p.add_argument("--dataset", default="mnist-sample", choices=DATASETS, metavar="NAME",
                   help=f"one of {', '.join(DATASETS)} (default: mnist-sample, shipped with the package)")
    p.add_argument("--data-dir", default="data", help="torchvision's data folder (default: ./data)")
    add_model_arguments(p)
    runs = p.add_argument_group("checkpoints and faults")
    runs.add_argument("--resume", type=Path, metavar="RUN_DIR",
                      help="go on from the run's newest good checkpoint (its settings are the run's; --epochs "
                      "gives it a new budget, except under a scaled --lr-schedule, and extends a finished run)")
    runs.add_argument("--init-from", type=Path, metavar="RUN",
                      help="start from the weights of a finished run (a run directory or checkpoint file) with the "
                      "same model and guide options; the optimizer and schedule start afresh")
    runs.add_argument("--checkpoint-every-steps", type=int,
                      help=f"also checkpoint every N steps (default {C.every_steps}: at each epoch's end only)")
    runs.add_argument("--checkpoint-every-seconds", type=float,
                      help=f"also checkpoint when this many seconds have passed (default {C.every_seconds:g}; 0: off)")
    runs.add_argument("--keep-checkpoints", type=int, help=f"newest checkpoints kept (default {C.keep})")
    runs.add_argument("--on-nan", choices=ON_NAN,
                      help="at a non-finite loss or gradient: stop (naming the site) or skip the step")
    runs.add_argument("--max-skipped", type=int, help=f"skip: give up after N in a row (default {C.max_skipped})")
    p.add_argument("--elbo", choices=tuple(ELBOS),
                   help="trace (Trace_ELBO), mean-field (TraceMeanField_ELBO) or iwae (the importance-weighted bound "
                   "of Burda et al. with K = --num-particles)")
    p.add_argument("--num-particles", type=int, help=f"samples of z per datapoint and step (default {T.num_particles})")
    p.add_argument("--compile", choices=COMPILE_MODES,
                   help=f"how the step is compiled (default {T.compile}): auto records the ELBO and its gradient as a graph, "
                   "checks it against Pyro's ELBO on the first step and falls back with a notice where it cannot be "
                   "used; fx and inductor (fused kernels, seconds of compilation per batch shape) compile without "
                   "the check; off runs Pyro's ELBO. The model must have a static structure")
    p.add_argument("--jit", dest="compile", action="store_const", const="fx", help="the same as --compile fx")
    p.add_argument("--no-jit", dest="compile", action="store_const", const="off", help="the same as --compile off")
    p.add_argument("--epochs", type=int,
                   help=f"passes over the training split (default {T.epochs}); with --resume, a new budget for the run")
    p.add_argument("--batch-size", type=int, help=f"datapoints per step (default {T.batch_size})")
    p.add_argument("--lr", type=float, help=f"Adam's learning rate (default {T.lr:g})")
    p.add_argument("--beta", type=float, help="KL weight (beta-VAE); 1 is the ELBO")
    p.add_argument("--warmup-epochs", type=float, help="linear KL warm-up length (default 0: none)")
    p.add_argument("--validation-size", type=non_negative_int, default=0,
                   help="hold out the last N training datapoints as a validation split (default 0; "
                   "binarized-mnist-static has its own)")
    p.add_argument("--patience", type=int,
                   help="early stopping: stop when the validation ELBO (with --elbo iwae, the IWAE bound) has not "
                   "improved for N epochs and keep the best epoch (default 0: off)")
    p.add_argument("--lr-decay", type=float, metavar="FACTOR",
                   help="multiply the learning rate by FACTOR in (0, 1] when the validation bound has not "
                   "improved for --lr-patience epochs (default 1: off)")
    p.add_argument("--lr-patience", type=int, help=f"epochs before each decay (default {T.lr_patience})")
    p.add_argument("--lr-schedule", choices=LR_SCHEDULES,
                   help="burda: Burda et al.'s decay in 8 stages to a tenth of --lr, lasting 1, 3, 9, ... 2187 "
                   "parts of 3280 of --epochs (default constant)")
    p.add_argument("--init-output-bias", action=argparse.BooleanOptionalAction,
                   help="start p(x|z) at the training data's mean: the decoder's output bias set to the mean "
                   "image's log-odds (for bernoulli) before the first step (default off)")
    p.add_argument("--seed", type=int, help=f"seed of every RNG (default {T.seed})")
    p.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda or cuda:N")
    p.add_argument("--out", type=Path, default=None, help="run directory (default: results/runs/<time>-<dataset>-<guide>)")
    p.add_argument("--no-progress", action="store_true", default=False, help="hide the progress bar")
    p.add_argument("--quiet", action="store_true", default=False,
                   help="no progress bar and no line per epoch (metrics.csv has them); errors are still printed")
    p.add_argument("--tensorboard", action="store_true", default=False,
                   help="also write TensorBoard event files into RUN_DIR/tensorboard (pip install \"ppl_vae[tensorboard]\")")
    p.set_defaults(func=cmd_train)
    return p


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


def cmd_train(args: argparse.Namespace) -> int:
    """``ppl-vae train``: a config error names the flag (or, for a run's own config, the file)."""
    try:
        distributed = init_distributed(resolve_device(args.device))
        try:
            return (cmd_resume if hasattr(args, "resume") else cmd_train_new)(args, distributed)
        finally:
            distributed.shutdown()
    except ConfigError as error:
        raise UsageError(error.render(flag_of_field)) from None


def distributed_settings(distributed, train_config: TrainConfig) -> dict:
    """The data-parallel settings recorded in the run's config (and printed by rank 0)."""
    if not distributed.is_distributed:
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
    distributed.broadcast_module_(model)
    distributed.broadcast_module_(guide)
    return model, guide


def cmd_train_new(args: argparse.Namespace, distributed) -> int:
    device = distributed.device
    train_config = TrainConfig(**train_settings(args))
    options = CheckpointOptions(**given(args, "checkpoints"))
    if train_config.compile in ("fx", "inductor") and distributed.is_distributed:
        raise UsageError(f"--compile {train_config.compile} does not support data-parallel training (torchrun); "
                         "choose --compile auto or off")
    if args.tensorboard:
        require_tensorboard()
    data = load_dataset(args.dataset, args.data_dir, device, args.validation_size)
    check_trainable(train_config, data, distributed)
    config = model_config(args, data)
    data = labelled_data(data, config, train_config.seed)
    model, guide = build_on_device(config, train_config.seed, device, distributed)
    init_path = getattr(args, "init_from", None)
    if init_path is not None and train_config.init_output_bias:
        raise UsageError("--init-output-bias would overwrite the decoder that --init-from loads; give one of them")
    try:
        init_from = warm_start(init_path, model, guide, config) if init_path is not None else None
    except CheckpointError as error:
        raise UsageError(f"--init-from: {error}") from None
    check_data(model.likelihood, data)
    check_fits(model, guide, config, train_config, device)
    if train_config.init_output_bias:  # before the run directory exists (the trainer's call repeats it)
        initialize_output_bias(model, data)
    run_config = {"dataset": args.dataset, "data_dir": str(args.data_dir), "validation_size": args.validation_size,
                  "tensorboard": args.tensorboard,
                  "device": str(device), "model": config.to_dict(), "train": train_config.to_dict(),
                  "checkpoints": options.to_dict(), "distributed": distributed_settings(distributed, train_config)}
    if init_from is not None:
        run_config["init_from"] = init_from

    with ExitStack() as held:
        def create_run_dir() -> Path:  # rank 0 creates and locks it; an error there reaches every rank
            out = new_run_dir(args.out, args.dataset, config.guide)
            held.enter_context(RunLock(out, "train"))
            write_run_config(out, run_config)
            return out

        out = distributed.on_main(create_run_dir)
        return run_training(out, model, guide, config, data, train_config, options, not (args.no_progress or args.quiet),
                            distributed=distributed, tensorboard=args.tensorboard, quiet=args.quiet)


def cmd_resume(args: argparse.Namespace, distributed) -> int:
    """``ppl-vae train --resume RUN_DIR``: go on from the run's newest good checkpoint."""
    if hasattr(args, "init_from"):
        raise UsageError("--init-from starts a new run; --resume goes on from the run's own checkpoint (drop one)")
    with ExitStack() as held:
        distributed.on_main(lambda: hold(held, args.resume, "train --resume"))
        return resume_locked(args, distributed)


def reopen_finished(run_dir: Path, train_config: TrainConfig, started: bool, distributed) -> None:
    """Make a finished run resumable for a longer budget, from its last training checkpoint.

    Its ``checkpoint.pt`` moves to ``checkpoints/finished-epoch-<N>.pt``, so that the run
    directory is an unfinished run until the new budget ends (an interruption leaves it
    resumable, and nothing written is lost).

    :param started: whether the run has a training checkpoint to go on from.
    :raises UsageError: if it has none, or if the run stopped early (``--patience``).
    """
    try:
        done = int(pd.read_csv(run_dir / "metrics.csv")["epoch"].iloc[-1])
    except (OSError, ValueError, KeyError, IndexError) as error:
        raise UsageError(f"{run_dir / 'metrics.csv'} cannot be read ({type(error).__name__}); "
                         "a longer budget cannot extend the run") from None
    if not started:
        raise UsageError(f"{run_dir} has no training checkpoint to go on from; a longer budget cannot extend it")
    if done < train_config.epochs:
        raise UsageError(f"{run_dir} stopped early at epoch {done} of {train_config.epochs} (--patience); "
                         "a longer budget cannot extend it")
    if distributed.is_main:
        (run_dir / "checkpoint.pt").rename(run_dir / "checkpoints" / f"finished-epoch-{done}.pt")


def resume_locked(args: argparse.Namespace, distributed) -> int:
    """``--resume`` while holding the run directory's lock."""
    run_config = read_config(args.resume)
    config, train_config, options = run_configs(args.resume, run_config)
    epochs = getattr(args, "epochs", train_config.epochs)
    finished = (args.resume / "checkpoint.pt").exists()
    started = any((args.resume / "checkpoints").glob("train-*.pt"))
    if finished and epochs <= train_config.epochs:
        print(f"{args.resume} is a finished run; nothing to resume (--epochs above {train_config.epochs} "
              "extends it)", file=sys.stderr)
        return 0
    if epochs != train_config.epochs and train_config.lr_schedule != "constant":
        raise UsageError(f"--epochs cannot change on --resume with --lr-schedule {train_config.lr_schedule}: "
                         "the schedule is scaled to the run's epochs")
    if finished:
        reopen_finished(args.resume, train_config, started, distributed)
    if epochs != train_config.epochs:  # a new budget (recorded in config.json)
        train_config = TrainConfig(**{**train_config.to_dict(), "epochs": epochs})
        run_config.setdefault("epochs_changed", []).append({"from": run_config["train"]["epochs"], "to": epochs})
        run_config["train"]["epochs"] = epochs
        if distributed.is_main:
            write_run_config(args.resume, run_config)
    device = distributed.device
    data = load_dataset(run_config["dataset"], run_config.get("data_dir", "data"), device,
                        run_config.get("validation_size", 0))
    data = labelled_data(data, config, train_config.seed)
    distributed_settings(distributed, train_config)
    model, guide = build_on_device(config, train_config.seed, device, distributed)
    if not started and "init_from" in run_config:
        warm_start(run_config["init_from"]["path"], model, guide, config)
    if not started and distributed.is_main:  # nothing was saved: start over
        print(f"{args.resume} has no checkpoint yet; starting it over", file=sys.stderr)
    return run_training(args.resume, model, guide, config, data, train_config, options, not (args.no_progress or args.quiet),
                        resume=started, distributed=distributed, tensorboard=bool(run_config.get("tensorboard")),
                        quiet=args.quiet)
