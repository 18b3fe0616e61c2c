"""Training throughput: ppl_vae's Trace_ELBO step against a plain PyTorch VAE loop.

The 784-400-20 MLP VAE of pytorch/examples (ReLU, Bernoulli likelihood, Adam lr 1e-3)
on dynamically binarized full MNIST, at batch sizes 128 and 512. In one process and
interleaved round by round, it times:

- ``plain-torch``: pytorch/examples' hand-written VAE (analytic KL, BCE loss) with
  torch's fastest Adam here (``fused=True``);
- ``plain-compiled``: the same loop with its loss (forward and, through AOTAutograd,
  backward) compiled by ``torch.compile`` (inductor);
- ``ppl_vae-off``: :class:`ppl_vae.SVIStep`, i.e. ``Trace_ELBO().differentiable_loss`` on
  the library's model/guide pair, one fused Adam over all parameters (``--compile off``);
- ``ppl_vae-fx``: the same step with the compiled Trace_ELBO, loss and gradient recorded
  once as one graph and replayed as Python (:mod:`ppl_vae.infer.compiled`; ``--compile fx``, ``--jit``);
- ``ppl_vae-inductor``: that graph compiled by inductor (``--compile inductor``);
- ``ppl_vae-auto``: the step that ``ppl-vae train`` and ``fit`` take with no flags
  (:func:`ppl_vae.infer.auto_compile.make_svi_step` with ``TrainConfig``'s default ``compile``),
  past ``promote_after`` steps its batch shape runs inductor's graph;
- ``ppl_vae-cuda-graph`` (CUDA only): the fx step, which on CUDA replays a captured CUDA graph;
- ``pyro-svi``: the same pair under plain ``pyro.infer.SVI`` with ``pyro.optim.Adam``.

Every method first trains ``--warmup-steps`` steps (by default auto's ``promote_after`` and 11
more), so that all are timed at the same point of training and auto in its steady state. Each
round then runs ``--steps`` steps per method, in turn; the median images/s over ``--rounds``
rounds is reported, with ``ratio_to_plain`` (to the eager plain loop) and
``ratio_to_best_plain`` (the median over rounds of the ratio to the faster plain loop of the
same round). ``default`` marks the row of the path taken with no flags; ``compile_s`` is the
library's recorded compile time (``CompiledELBO.compile_seconds``, summed: auto's fx and inductor
graphs) for its compiled rows, else the first step's time less a step's.
Writes ``results/bench_train.csv`` and ``results/bench_train.md``.
The process keeps freed memory for reuse (``--allocator retain``, what the ``ppl-vae``
command does, :mod:`ppl_vae.training.memory`), so that all methods run without glibc's page
faults; ``--allocator default`` measures under glibc's defaults. It also flushes float
subnormals to zero for every method (``--subnormals flush``, what the command does,
:mod:`ppl_vae.training.subnormals`: Adam's moments pass through that range as training goes
on); ``--subnormals keep`` measures without.

Usage::

    python scripts/bench_train.py --data-dir ../shared/data
"""

import argparse
import platform
import statistics
import time
from pathlib import Path

import pandas as pd
import pyro
import torch
import torch.nn.functional as F
from pyro.infer import SVI, Trace_ELBO
from torch import nn

from ppl_vae import ModelConfig, SVIStep, TrainConfig, build_pair, load_dataset, make_elbo
from ppl_vae.infer.auto_compile import CheckedCompiledStep, make_svi_step
from ppl_vae.infer.svi_step import make_adam
from ppl_vae.training.device import resolve_device
from ppl_vae.training.memory import ALLOCATORS, choose_allocator
from ppl_vae.training.subnormals import SUBNORMAL_MODES, choose_subnormals


class PlainVAE(nn.Module):
    """pytorch/examples' VAE (examples/vae/main.py), returning logits."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(784, 400)
        self.fc21 = nn.Linear(400, 20)
        self.fc22 = nn.Linear(400, 20)
        self.fc3 = nn.Linear(20, 400)
        self.fc4 = nn.Linear(400, 784)

    def forward(self, x):
        h = F.relu(self.fc1(x.view(-1, 784)))
        mu, logvar = self.fc21(h), self.fc22(h)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return self.fc4(F.relu(self.fc3(z))), mu, logvar


def plain_runner(device, compiled: bool = False):
    vae = PlainVAE().to(device)
    optimizer = make_adam(vae.parameters(), 1e-3)

    def loss_fn(x):
        logits, mu, logvar = vae(x)
        bce = F.binary_cross_entropy_with_logits(logits, x.view(-1, 784), reduction="sum")
        kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
        return bce + kld

    loss_fn = torch.compile(loss_fn) if compiled else loss_fn

    def step(x):
        loss = loss_fn(x)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


def pair(device):
    model, guide = build_pair(ModelConfig(event_shape=(1, 28, 28), z_dim=20, hidden_dims=(400,)))
    return model.to(device), guide.to(device)


def ppl_vae_runner(compile: str):
    return lambda device: make_svi_step(*pair(device), compile=compile, lr=1e-3)


def pyro_svi_runner(device):
    model, guide = pair(device)
    return SVI(model, guide, pyro.optim.Adam({"lr": 1e-3}), Trace_ELBO()).step


DEFAULT = "ppl_vae-" + TrainConfig().compile
RUNNERS = {"plain-torch": plain_runner, "plain-compiled": lambda device: plain_runner(device, compiled=True),
           **{f"ppl_vae-{mode}": ppl_vae_runner(mode) for mode in ("off", "fx", "inductor", "auto")},
           "pyro-svi": pyro_svi_runner}
PLAIN = ("plain-torch", "plain-compiled")
# on CUDA the compiled steps replay a captured CUDA graph; this row measures the fx step without one
CUDA_RUNNERS = {"ppl_vae-fx-no-cuda-graph": lambda device: SVIStep(*pair(device), make_elbo("trace", compile="fx",
                                                                                             cuda_graphs=False))}


def time_steps(step, batches, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for x in batches:
        step(x)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=(128, 512))
    parser.add_argument("--steps", type=int, default=100, help="steps per method and round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path("results"))
    parser.add_argument("--name", help="file name stem (default bench_train, bench_train_cuda on CUDA)")
    parser.add_argument("--allocator", choices=ALLOCATORS, default="retain",
                        help="retain: keep freed memory, as the ppl-vae command does (ppl_vae.training.memory); "
                             "default: glibc's defaults")
    parser.add_argument("--subnormals", choices=SUBNORMAL_MODES, default="flush",
                        help="flush: float subnormals read and written as 0 in every method, as the ppl-vae command "
                             "does (ppl_vae.training.subnormals); keep: the CPU's default")
    parser.add_argument("--warmup-steps", type=int, default=CheckedCompiledStep.promote_after + 11,
                        help="steps every method trains before it is timed (default: auto's promote_after + 11)")
    args = parser.parse_args()
    subnormals = choose_subnormals(args.subnormals)  # first: the worker threads take the mode when created
    allocator = choose_allocator(args.allocator)
    device = resolve_device(args.device)
    data = load_dataset("binarized-mnist", args.data_dir, device)
    pyro.set_rng_seed(0)
    rows = []
    for batch_size in args.batch_sizes:
        batches = list(data.batches("train", batch_size, shuffle=True))[: args.steps]
        runners, compile_s = {}, {}
        methods = {**RUNNERS, **(CUDA_RUNNERS if device.type == "cuda" else {})}
        for name, make in methods.items():  # warm-up: the first step records and compiles
            runners[name] = make(device)
            first = time_steps(runners[name], batches[:1], device)
            compile_s[name] = max(first - time_steps(runners[name], batches[1:11], device) / 10, 0.0)
            steps = 11
            while steps < args.warmup_steps:  # every method to the same point of training
                chunk = batches[: args.warmup_steps - steps]
                time_steps(runners[name], chunk, device)
                steps += len(chunk)
            if hasattr(getattr(runners[name], "elbo", None), "compile_seconds"):  # the library's own record
                compile_s[name] = sum(runners[name].elbo.compile_seconds)
        rates = {name: [] for name in runners}
        for _ in range(args.rounds):
            for name, step in runners.items():
                seconds = time_steps(step, batches, device)
                rates[name].append(len(batches) * batch_size / seconds)
        reference = statistics.median(rates["plain-torch"])
        best_plain = [max(values) for values in zip(*(rates[name] for name in PLAIN))]
        for name, values in rates.items():
            rows.append({
                "device": str(device), "allocator": allocator, "subnormals": subnormals,
                "batch_size": batch_size, "method": name, "default": name == DEFAULT,
                "images_per_s": round(statistics.median(values)),
                "ratio_to_plain": round(statistics.median(values) / reference, 3),
                "ratio_to_best_plain": round(statistics.median(v / b for v, b in zip(values, best_plain)), 3),
                "compile_s": round(compile_s[name], 2),
                "rounds": args.rounds, "steps_per_round": len(batches),
            })
            print(rows[-1])
    table = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    name = args.name or ("bench_train" if device.type == "cpu" else f"bench_train_{device.type}")
    table.to_csv(args.out / f"{name}.csv", index=False)
    machine = (f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
               f"torch {torch.__version__}, pyro {pyro.__version__}")
    with open(args.out / f"{name}.md", "w") as f:
        f.write(f"# Training throughput ({device}; {machine})\n\n")
        f.write("`python scripts/bench_train.py " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in
                [("device", args.device), ("steps", args.steps), ("rounds", args.rounds),
                 ("allocator", args.allocator), ("subnormals", args.subnormals),
                 ("warmup-steps", args.warmup_steps)]) + "`\n\n")
        f.write(table.to_markdown(index=False) + "\n")
        f.write("\nratio_to_best_plain: the median over rounds of the ratio to the faster plain loop of the same "
                f"round. Every method is timed after {args.warmup_steps} training steps; ppl_vae-auto (default) "
                "is then in its steady state (past its promote_after steps its batch shape runs inductor's graph); "
                "compile_s: CompiledELBO.compile_seconds, summed, for the library's compiled rows.\n")


if __name__ == "__main__":
    main()
