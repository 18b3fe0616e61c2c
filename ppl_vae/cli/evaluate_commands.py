"""``ppl-vae evaluate`` and ``ppl-vae check``: read a finished run directory, append a table to it."""

import argparse
from contextlib import ExitStack
from pathlib import Path

import torch

from ppl_vae.cli.arguments import UsageError, positive_int
from ppl_vae.cli.run_directory import append_table, load_run
from ppl_vae.cli.run_lock import RunLock, hold
from ppl_vae.infer.importance import pass_size
from ppl_vae.training.device import resolve_device
from ppl_vae.training.distributed import init_distributed
from ppl_vae.training.footprint import available_bytes, pass_bytes


def add_run_dir_arguments(p) -> None:
    p.add_argument("run_dir", type=Path, help="a run directory written by ppl-vae train")
    p.add_argument("--split", default="test", choices=("test", "valid", "train"))
    p.add_argument("--num-datapoints", type=positive_int, default=None, help="the first N datapoints (default: all)")
    p.add_argument("--data-dir", default=None, help="override the run's data directory")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--seed", type=int, default=0, help="seed of the test binarization and the samples")


def add_evaluate_parser(subparsers) -> None:
    p = subparsers.add_parser("evaluate", help="importance-sampled log-likelihood (IWAE bound), active units, KL")
    add_run_dir_arguments(p)
    p.add_argument("--num-samples", type=positive_int, default=5000, help="K importance samples (default 5000)")
    p.add_argument("--batch-size", type=positive_int,
                   help="datapoints per pass (default: by device, 2 on the CPU, as many as a quarter of free memory "
                   "holds on CUDA)")
    p.add_argument("--chunk-size", type=positive_int,
                   help="samples per pass (default: by device, 2000 on the CPU, up to 5000 on CUDA; batch x chunk "
                   "sets memory; a few thousand pairs suit CPU caches)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_evaluate)


def add_check_parser(subparsers) -> None:
    p = subparsers.add_parser("check", help="Trace_ELBO and TraceMeanField_ELBO against the closed-form ELBO")
    add_run_dir_arguments(p)
    p.set_defaults(num_datapoints=500)
    p.add_argument("--num-particles", type=positive_int, default=100, help="particles per estimator run")
    p.add_argument("--repeats", type=positive_int, default=20, help="estimator runs, for the standard error")
    p.add_argument("--num-samples", type=positive_int, default=1000,
                   help="draws for the closed form's Monte Carlo likelihood term")
    p.set_defaults(func=cmd_check)


def evaluation_data(args: argparse.Namespace):
    """The run's model, guide and the fixed model arguments to evaluate on (binarized once, seeded)."""
    from ppl_vae.models.base import model_arguments

    device = resolve_device(args.device)
    model, guide, data = load_run(args.run_dir, device, args.data_dir)
    x, labels = data.split(args.split)
    x = x[: args.num_datapoints]
    labels = None if labels is None else labels[: args.num_datapoints]
    if data.binarize:
        generator = torch.Generator(device=x.device).manual_seed(args.seed)
        x = torch.bernoulli(x, generator=generator)
    return model, guide, data, model_arguments(model)(x, labels)


def check_pass_fits(pairs: int, x: torch.Tensor, device: torch.device) -> None:
    """Refuse an evaluation pass (``--batch-size`` x ``--chunk-size`` pairs) that cannot fit in memory."""
    need = pass_bytes(pairs, x[0].numel())
    if need > available_bytes(device):
        raise UsageError(f"--batch-size x --chunk-size = {pairs:,} pairs a pass need about {need / 2**30:,.1f} GiB, "
                         f"more than the {available_bytes(device) / 2**30:,.1f} GiB of {device}; choose smaller ones")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from ppl_vae.training.evaluation import evaluation_table

    distributed = init_distributed(resolve_device(args.device))  # under torchrun: datapoints sharded over ranks
    with ExitStack() as held:
        try:
            distributed.on_main(lambda: hold(held, args.run_dir, "evaluate"))
            args.device = str(distributed.device)  # under torchrun: this rank's
            model, guide, data, (x, *condition) = evaluation_data(args)
            batch_size, chunk_size = pass_size(distributed.device, args.num_samples, x[0].numel())
            args.batch_size, args.chunk_size = args.batch_size or batch_size, args.chunk_size or chunk_size
            check_pass_fits(args.batch_size * min(args.chunk_size, args.num_samples), x, distributed.device)
            main = distributed.is_main
            size = distributed.shard_bounds(len(x))[1]
            with tqdm(total=size, desc="evaluate", unit="image", disable=args.no_progress or not main) as bar:
                row = evaluation_table(model, guide, x, *condition, num_samples=args.num_samples,
                                       batch_size=args.batch_size, chunk_size=args.chunk_size, seed=args.seed,
                                       progress=bar, distributed=distributed)
        finally:
            distributed.shutdown()
        if main:
            write_evaluation(args, model, guide, data, x, condition, row, distributed.world_size)
    return 0


def write_evaluation(args: argparse.Namespace, model, guide, data, x, condition, row: dict, processes: int) -> None:
    """Append the evaluation's row to the run's ``evaluation.csv`` and print it."""
    import pandas as pd

    if processes > 1:
        row["processes"] = processes
    labels = getattr(data, f"{args.split}_labels")  # the true labels, even where the model does not see them
    labels = None if labels is None else labels[: len(x)]
    row.update(model.extra_metrics(x, *condition, guide=guide, labels=labels))  # the model's own (ppl_vae.models.base.Model)
    row = {"dataset": data.name, "split": args.split, "device": str(x.device), **row}
    append_table(args.run_dir, "evaluation", pd.DataFrame([row]))
    print(f"{data.name} {args.split}: NLL {row['nll']:.2f} +- {row['nll_std_error']:.2f} nats "
          f"({row['bits_per_dim']:.4f} bits/dim), ELBO {row['elbo']:.2f}, K={args.num_samples}, "
          f"active units {row['active_units']}/{row['z_dim']}, {row['seconds']:.0f} s")


def cmd_check(args: argparse.Namespace) -> int:
    from ppl_vae.infer.agreement import elbo_agreement

    with RunLock(args.run_dir, "check"):
        model, guide, data, (x, *condition) = evaluation_data(args)
        table = elbo_agreement(model, guide, x, *condition, num_particles=args.num_particles, repeats=args.repeats,
                               seed=args.seed,
                               num_samples=args.num_samples)
        table.insert(0, "dataset", data.name)
        append_table(args.run_dir, "check", table)
    for row in table.itertuples():
        print(f"{row.estimator}: {row.estimate:.3f} +- {row.std_error:.3f}, {row.reference_kind} reference "
              f"{row.reference:.3f} +- {row.reference_std_error:.3f}: {row.z:+.2f} standard errors "
              f"({'agrees' if abs(row.z) < 4 else 'DISAGREES'})")
    return 0
