"""Speed of the importance-sampled log-likelihood (IWAE bound) against two references.

For the 784-400-20 MLP VAE and the 784-200-200-50 tanh MLP of the IWAE paper (Burda et
al. 2015), each trained for ``--train-epochs`` on dynamically binarized MNIST, it
evaluates the test NLL with K importance samples through
:func:`ppl_vae.infer.importance.estimate_log_likelihood` (Pyro traces), and on a subset of the
test images measures, in the same process and interleaved block by block (every method
runs on each block of ``--block-size`` images before the next block, so that a slow spell
of the machine falls on all of them alike; the rates are total pairs over total time):

- ``bare``: the compute limit: the decoder and the model's likelihood's log-probability
  alone (the same distribution the Pyro model uses), in large no-grad batches, no
  encoder, no Pyro; so ``ratio_to_bare`` is what Pyro's tracing costs;
- ``bare-torch``: the same with torch's ``Bernoulli.log_prob``, whose CPU kernel is
  slower than the library's (:mod:`ppl_vae.distributions.bernoulli`);
- ``pythae``: pythae's way: a Python loop over datapoints, each with its K samples in
  batches of 100, scored with torch's ``Bernoulli.log_prob`` (pythae itself uses
  ``F.binary_cross_entropy`` on sigmoid outputs and runs the encoder once per sample,
  which is slower still).

The process keeps freed memory for reuse (``--allocator retain``, what the ``ppl-vae``
command does, :mod:`ppl_vae.training.memory`), so that all methods run without glibc's page
faults; ``--allocator default`` measures under glibc's defaults.

Writes ``results/bench_evaluate.csv`` and ``results/bench_evaluate.md``.

Usage::

    python scripts/bench_evaluate.py --data-dir ../shared/data             # full: 10,000 x 5000
    python scripts/bench_evaluate.py --num-datapoints 500 --num-samples 1000 # quick
"""

import argparse
import math
import platform
import time
from pathlib import Path

import pandas as pd
import pyro
import pyro.distributions as dist
import torch

from ppl_vae import ModelConfig, TrainConfig, build_pair, fit, load_dataset
from ppl_vae.infer.importance import estimate_log_likelihood, pass_size
from ppl_vae.training.device import resolve_device
from ppl_vae.training.memory import ALLOCATORS, choose_allocator

MODELS = {
    "784-400-20 relu": ModelConfig(z_dim=20, hidden_dims=(400,), activation="relu"),
    "784-200-200-50 tanh": ModelConfig(z_dim=50, hidden_dims=(200, 200), activation="tanh"),
}


def torch_bernoulli(logits: torch.Tensor) -> dist.TorchDistribution:
    """torch's own Bernoulli over a 28x28 image, for the ``bare-torch`` reference."""
    return dist.Bernoulli(logits=logits, validate_args=False).to_event(3)


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(run, block: torch.Tensor, device) -> float:
    """Seconds that ``run(block)`` takes (synchronized on GPU)."""
    synchronize(device)
    start = time.perf_counter()
    run(block)
    synchronize(device)
    return time.perf_counter() - start


@torch.no_grad()
def bare_log_weights(model, x, num_samples, batch_size, chunk_size, device, likelihood=None) -> None:
    """Decoder + likelihood log_prob only, on z drawn from the prior, same pass shape.

    :param likelihood: decoder output -> distribution; default the model's own.
    """
    if likelihood is None:
        likelihood = model.likelihood
    with pyro.validation_enabled(False):  # as in the evaluation
        for i in range(0, len(x), batch_size):
            batch = x[i:i + batch_size]
            for start in range(0, num_samples, chunk_size):
                z = torch.randn(min(chunk_size, num_samples - start), len(batch), model.z_dim, device=device)
                likelihood(model.decoder(z)).log_prob(batch)


@torch.no_grad()
def pythae_log_likelihood(model, guide, x, num_samples, device, samples_per_batch=100) -> None:
    """pythae's NLL loop: per datapoint, its samples in batches of 100 (at least one batch)."""
    for i in range(len(x)):
        xi = x[i:i + 1]
        loc, scale = guide.loc_scale(xi)
        log_w = []
        for _ in range(max(1, num_samples // samples_per_batch)):
            z = loc + scale * torch.randn(min(num_samples, samples_per_batch), guide.z_dim, device=device)
            log_px_z = dist.Bernoulli(logits=model.decoder(z), validate_args=False).log_prob(xi).sum((-3, -2, -1))
            log_pz = dist.Normal(0.0, 1.0).log_prob(z).sum(-1)
            log_qz = dist.Normal(loc, scale).log_prob(z).sum(-1)
            log_w.append(log_px_z + log_pz - log_qz)
        torch.logsumexp(torch.cat(log_w), 0) - math.log(num_samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--num-datapoints", type=int, default=10_000, help="test images for the full evaluation")
    parser.add_argument("--num-samples", type=int, default=5000)
    parser.add_argument("--reference-datapoints", type=int, default=500, help="subset for the references")
    parser.add_argument("--block-size", type=int, default=10, help="images per interleaved block of the subset")
    parser.add_argument("--batch-size", type=int, help="datapoints per pass (default: by device, pass_size)")
    parser.add_argument("--chunk-size", type=int, help="samples per pass (default: by device, pass_size)")
    parser.add_argument("--train-epochs", type=int, default=1)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--out", type=Path, default=Path("results"))
    parser.add_argument("--allocator", choices=ALLOCATORS, default="retain",
                        help="retain: keep freed memory, as the ppl-vae command does (ppl_vae.training.memory); "
                             "default: glibc's defaults")
    args = parser.parse_args()
    allocator = choose_allocator(args.allocator)
    device = resolve_device(args.device)
    pyro.set_rng_seed(0)
    data = load_dataset("binarized-mnist", args.data_dir, device)
    x = torch.bernoulli(data.test[: args.num_datapoints], generator=torch.Generator(device).manual_seed(0))
    batch_size, chunk_size = pass_size(device, args.num_samples, x[0].numel())  # the evaluator's own choice
    args.batch_size, args.chunk_size = args.batch_size or batch_size, args.chunk_size or chunk_size
    rows = []
    for name in args.models:
        model, guide = build_pair(MODELS[name])
        model, guide = model.to(device), guide.to(device)
        fit(model, guide, data, TrainConfig(epochs=args.train_epochs, batch_size=100), progress=False)
        subset = x[: args.reference_datapoints]
        common = dict(num_samples=args.num_samples, batch_size=args.batch_size, chunk_size=args.chunk_size)
        # ppl_vae and the references on the same subset, interleaved block by block, after a warm-up
        estimate_log_likelihood(model, guide, subset[:2], **common)
        methods = {
            "ppl_vae": lambda block: estimate_log_likelihood(model, guide, block, **common),
            "bare": lambda block: bare_log_weights(model, block, args.num_samples, args.batch_size,
                                                   args.chunk_size, device),
            "bare-torch": lambda block: bare_log_weights(model, block, args.num_samples, args.batch_size,
                                                         args.chunk_size, device, torch_bernoulli),
            "pythae": lambda block: pythae_log_likelihood(model, guide, block, args.num_samples, device),
        }
        method_seconds = dict.fromkeys(methods, 0.0)
        for i in range(0, len(subset), args.block_size):
            for method, run in methods.items():
                method_seconds[method] += timed(run, subset[i:i + args.block_size], device)
        subset_rate, bare, bare_torch, pythae = (len(subset) * args.num_samples / method_seconds[k] for k in methods)
        synchronize(device)
        start = time.perf_counter()
        result, _ = estimate_log_likelihood(model, guide, x, **common)
        synchronize(device)
        seconds = time.perf_counter() - start
        nll = -result.log_likelihood
        rows.append({
            "model": name, "device": str(device), "allocator": allocator,
            "num_datapoints": len(x), "num_samples": args.num_samples,
            "train_epochs": args.train_epochs, "test_nll": round(nll.mean().item(), 2),
            "nll_std_error": round((nll.std() / len(nll) ** 0.5).item(), 2), "seconds": round(seconds, 1),
            "pairs_per_s": round(len(x) * args.num_samples / seconds),
            "subset_pairs_per_s": round(subset_rate), "bare_pairs_per_s": round(bare),
            "bare_torch_pairs_per_s": round(bare_torch),
            "pythae_pairs_per_s": round(pythae), "ratio_to_bare": round(subset_rate / bare, 3),
            "ratio_to_pythae": round(subset_rate / pythae, 3),
        })
        print(rows[-1], flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "" if device.type == "cpu" else f"_{device.type}"
    path = args.out / f"bench_evaluate{suffix}.csv"
    table = pd.DataFrame(rows)
    if path.exists():  # keep other models' rows from earlier runs; a model measured again is replaced
        earlier = pd.read_csv(path)
        table = pd.concat([earlier[~earlier["model"].isin(table["model"])], table], ignore_index=True)
    table.to_csv(path, index=False)
    machine = f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    command = (f"python scripts/bench_evaluate.py --num-datapoints {args.num_datapoints} "
               f"--num-samples {args.num_samples} --reference-datapoints {args.reference_datapoints} "
               f"--block-size {args.block_size} --batch-size {args.batch_size} --chunk-size {args.chunk_size} "
               f"--device {args.device} --allocator {args.allocator}")
    with open(args.out / f"bench_evaluate{suffix}.md", "w") as f:
        f.write(f"# IWAE evaluation speed ({device}; {machine})\n\n`{command}`\n\n")
        f.write(f"Ratios are measured on the first {args.reference_datapoints} test images, in one process, "
                f"interleaved in blocks of {args.block_size} images.\n\n")
        f.write(table.to_markdown(index=False) + "\n")


if __name__ == "__main__":
    main()
