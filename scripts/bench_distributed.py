"""Data-parallel training throughput: 1 process against 2 processes (torch.distributed), in one run.

The library's own training loop (:class:`ppl_vae.Trainer`) on dynamically binarized
MNIST, 784-400-20 MLP, Bernoulli decoder, diagonal guide, Trace_ELBO, for a few global
batch sizes. Configurations, interleaved over ``--rounds`` rounds (median reported):

- ``1 process x 1 thread`` and ``2 processes x 1 thread`` (Gloo): the scaling efficiency is
  throughput(2) / (2 x throughput(1));
- ``1 process x 2 threads``: the same two cores used by intra-op threading instead;
- on a machine with 2 or more GPUs, ``1 GPU`` and ``2 GPUs`` (NCCL) too.

Each configuration is launched as fresh processes (with the environment ``torchrun``
sets), times steps ``--warmup``..``--warmup + --steps`` on rank 0, and reports
images per second. Writes results/distributed.csv and results/distributed.md.

Usage::

    python scripts/bench_distributed.py --data-dir ../shared/data --rounds 3
"""

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch


def worker(args: argparse.Namespace) -> None:
    """One rank: train ``warmup + steps`` steps; rank 0 writes the timing as JSON."""
    from ppl_vae import ModelConfig, TrainConfig, Trainer, build_pair, load_dataset
    from ppl_vae.training.device import resolve_device
    from ppl_vae.training.distributed import init_distributed
    from ppl_vae.training.trainer import StopRequested

    distributed = init_distributed(resolve_device(args.device))
    device = distributed.device
    data = load_dataset("binarized-mnist", args.data_dir, device)
    torch.manual_seed(0)
    model, guide = build_pair(ModelConfig(z_dim=20, hidden_dims=(400,), likelihood="bernoulli"))
    model, guide = model.to(device), guide.to(device)
    trainer = Trainer(model, guide, data, TrainConfig(epochs=100, batch_size=args.batch_size), distributed=distributed)
    marks = {}

    def after_step(step: int) -> None:
        if step in (args.warmup, args.warmup + args.steps):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            marks[step] = time.perf_counter()
            if distributed.is_distributed:
                marks[f"collectives_{step}"] = distributed.seconds_in_collectives

    stop = lambda: args.warmup + args.steps in marks  # noqa: E731
    try:
        trainer.run(progress=False, stop_requested=stop, after_step=after_step)
    except StopRequested:  # the end of the timed steps
        pass
    if distributed.is_main:
        seconds = marks[args.warmup + args.steps] - marks[args.warmup]
        waiting = (marks[f"collectives_{args.warmup + args.steps}"] - marks[f"collectives_{args.warmup}"]
                   if distributed.is_distributed else 0.0)
        Path(args.out).write_text(json.dumps({"images_per_s": args.steps * args.batch_size / seconds,
                                              "ms_per_step": 1000 * seconds / args.steps,
                                              "ms_in_collectives_per_step": 1000 * waiting / args.steps}))
    distributed.shutdown()


def launch(args: argparse.Namespace, processes: int, threads: int, device: str, batch_size: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "timing.json"
        command = [sys.executable, __file__, "--worker", "--data-dir", args.data_dir, "--device", device,
                   "--batch-size", str(batch_size), "--steps", str(args.steps), "--warmup", str(args.warmup),
                   "--out", str(out)]
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        if processes > 1:
            env |= {"WORLD_SIZE": str(processes), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
        procs = [subprocess.Popen(command, env=dict(env, RANK=str(r), LOCAL_RANK=str(r)) if processes > 1 else env)
                 for r in range(processes)]
        if any(proc.wait() != 0 for proc in procs):
            raise SystemExit(f"a worker failed ({processes} processes, {device})")
        return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=(128, 512))
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out-dir", type=Path, default=Path("results"))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, default=128, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    settings = [("1 process x 1 thread", 1, 1, "cpu"), ("2 processes x 1 thread", 2, 1, "cpu"),
                ("1 process x 2 threads", 1, 2, "cpu")]
    if torch.cuda.device_count() >= 2:
        settings += [("1 GPU", 1, 1, "cuda"), ("2 GPUs", 2, 1, "cuda")]
    timings: dict[tuple, list] = {}
    for round_ in range(args.rounds):
        for batch_size in args.batch_sizes:
            for name, processes, threads, device in settings:
                result = launch(args, processes, threads, device, batch_size)
                timings.setdefault((batch_size, name, processes, threads, device), []).append(result)
                print(f"round {round_ + 1}: batch {batch_size}, {name}: {result['images_per_s']:.0f} images/s",
                      flush=True)
    rows = []
    for (batch_size, name, processes, threads, device), values in timings.items():
        rows.append({"global_batch_size": batch_size, "setting": name, "processes": processes,
                     "threads_per_process": threads, "device": device,
                     "images_per_s": statistics.median(v["images_per_s"] for v in values),
                     "ms_per_step": statistics.median(v["ms_per_step"] for v in values),
                     "ms_in_collectives_per_step": statistics.median(v["ms_in_collectives_per_step"] for v in values),
                     "rounds": len(values)})
    table = pd.DataFrame(rows)
    for batch_size in args.batch_sizes:
        for single, group in (("1 process x 1 thread", "2 processes x 1 thread"), ("1 GPU", "2 GPUs")):
            base = table[(table.global_batch_size == batch_size) & (table.setting == single)]
            mask = (table.global_batch_size == batch_size) & (table.setting == group)
            if len(base) and mask.any():
                table.loc[mask, "scaling_efficiency"] = table.loc[mask, "images_per_s"] / (2 * base.images_per_s.iloc[0])
    table["machine"] = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"
    args.out_dir.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out_dir / "distributed.csv", index=False)
    header = (f"Data-parallel throughput, 784-400-20 Bernoulli VAE on binarized MNIST, Trace_ELBO, median of "
              f"{args.rounds} rounds of {args.steps} timed steps. Command: `python scripts/bench_distributed.py "
              f"--rounds {args.rounds}`.\n\n")
    (args.out_dir / "distributed.md").write_text(header + table.to_markdown(index=False, floatfmt=".2f") + "\n")
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
