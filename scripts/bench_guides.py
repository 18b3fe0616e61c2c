"""Guides compared at equal epochs: diag, full-rank, planar and IAF on binarized MNIST.

The same model for every guide, the IWAE paper's architecture (Burda et al. 2015):
784-200-200-50 tanh MLP encoder and mirrored decoder, Bernoulli likelihood, on
dynamically binarized MNIST; Adam lr 1e-3, batch 100, the same number of epochs. For
each guide it records the test ELBO (one sample per image, full test split), the test
NLL by importance sampling (K samples on the first ``--nll-datapoints`` test images,
binarized once with seed 0) and the training throughput. Each finished guide is appended
to ``results/guides.csv`` at once, and a rerun skips guides already there (delete the
file to start over), as are its per-image NLLs (``results/guides_per_image.csv``, from
which the IAF-vs-diag gain gets a paired standard error); ``results/guides.md``,
``results/guides_curves.csv`` and ``results/guides_curves.png`` are rewritten at the end.

Usage::

    python scripts/bench_guides.py --data-dir ../shared/data --epochs 10
    python scripts/bench_guides.py --guides diag iaf --options 'iaf={"num_flows": 4, "hidden_dims": [101]}'
"""

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import pandas as pd
import pyro
import torch
from pyro.infer import Trace_ELBO

from ppl_vae import ModelConfig, SVIStep, TrainConfig, build_pair, fit, load_dataset
from ppl_vae.infer.importance import estimate_log_likelihood
from ppl_vae.training.device import resolve_device

GUIDE_OPTIONS = {"diag": {}, "full-rank": {}, "planar": {"num_flows": 8}, "iaf": {"num_flows": 3, "hidden_dims": [101]}}


def model_config(guide_name: str, options: dict) -> ModelConfig:
    """The IWAE paper's 784-200-200-50 tanh MLP with a Bernoulli likelihood and the named guide."""
    return ModelConfig(z_dim=50, hidden_dims=(200, 200), activation="tanh", likelihood="bernoulli",
                       guide=guide_name, guide_options=options)


def interleaved_step_ms(guide_options: dict, names: list[str], data, rounds: int, steps: int) -> dict[str, float]:
    """Milliseconds per training step of each guide: fresh pairs, the same batches, rounds of
    ``steps`` steps interleaved over the guides, the median over rounds. Interleaving makes
    the ratios robust to the machine's speed drifting, which whole sequential runs are not."""
    batches = list(data.batches("train", 100, shuffle=True))[:steps]
    step_fns = {}
    for name in names:
        model, guide = build_pair(model_config(name, guide_options[name]))
        step_fns[name] = SVIStep(model.to(data.train.device), guide.to(data.train.device), Trace_ELBO())
        for x in batches[:10]:  # warm-up
            step_fns[name](x)
    times = {name: [] for name in names}
    for _ in range(rounds):
        for name, step in step_fns.items():
            start = time.perf_counter()
            for x in batches:
                step(x)
            times[name].append((time.perf_counter() - start) / len(batches) * 1e3)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--guides", nargs="+", default=list(GUIDE_OPTIONS), choices=list(GUIDE_OPTIONS))
    parser.add_argument("--num-samples", type=int, default=1000, help="K for the test NLL")
    parser.add_argument("--nll-datapoints", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--options", action="append", default=[], metavar="GUIDE=JSON",
                        help='override a guide\'s options, e.g. --options \'iaf={"num_flows": 4}\'')
    parser.add_argument("--timing-rounds", type=int, default=7, help="rounds of interleaved step timing (0: none)")
    parser.add_argument("--timing-steps", type=int, default=50, help="steps per guide and timing round")
    parser.add_argument("--out", type=Path, default=Path("results"))
    args = parser.parse_args()
    guide_options = dict(GUIDE_OPTIONS)
    for item in args.options:
        name, _, options = item.partition("=")
        if name not in guide_options:
            parser.error(f"unknown guide {name!r} in --options; choose from {', '.join(guide_options)}")
        try:
            guide_options[name] = json.loads(options)
        except json.JSONDecodeError as error:
            parser.error(f"--options {name}=...: not JSON ({error})")
    device = resolve_device(args.device)
    data = load_dataset("binarized-mnist", args.data_dir, device)
    x_nll = torch.bernoulli(data.test[: args.nll_datapoints], generator=torch.Generator(device).manual_seed(0))
    args.out.mkdir(parents=True, exist_ok=True)
    table_path, curves_path = args.out / "guides.csv", args.out / "guides_curves.csv"
    per_image_path = args.out / "guides_per_image.csv"
    done = pd.read_csv(table_path) if table_path.exists() else pd.DataFrame()
    curves = pd.read_csv(curves_path) if curves_path.exists() else pd.DataFrame()
    per_image = pd.read_csv(per_image_path) if per_image_path.exists() else pd.DataFrame()
    for guide_name in args.guides:
        if len(done) and guide_name in set(done["guide"]):
            print(f"{guide_name}: already in {table_path}, skipped", flush=True)
            continue
        pyro.clear_param_store()
        torch.manual_seed(args.seed)
        model, guide = build_pair(model_config(guide_name, guide_options[guide_name]))
        model, guide = model.to(device), guide.to(device)
        start = time.perf_counter()
        metrics = fit(model, guide, data, TrainConfig(epochs=args.epochs, batch_size=100, lr=1e-3, seed=args.seed),
                      progress=False, on_epoch=lambda row: print(guide_name, row, flush=True))
        train_seconds = metrics["seconds"].iloc[-1]
        result, _ = estimate_log_likelihood(model, guide, x_nll, num_samples=args.num_samples)
        nll = -result.log_likelihood
        row = {
            "guide": guide_name, "options": str(guide_options[guide_name]), "epochs": args.epochs,
            "test_elbo": round(metrics["test_elbo"].iloc[-1], 2),
            "test_nll": round(nll.mean().item(), 2), "nll_std_error": round((nll.std() / len(nll) ** 0.5).item(), 2),
            "nll_num_samples": args.num_samples, "nll_datapoints": len(x_nll),
            "train_seconds": round(train_seconds, 1), "seconds_per_epoch": round(train_seconds / args.epochs, 2),
            "train_images_per_s": round(len(data.train) * args.epochs / train_seconds),
            "wall_seconds": round(time.perf_counter() - start, 1), "device": str(device),
            "parameters": sum(p.numel() for p in guide.parameters()),
        }
        print(row, flush=True)
        done = pd.concat([done, pd.DataFrame([row])], ignore_index=True)
        done.to_csv(table_path, index=False)
        curves = pd.concat([curves, metrics.assign(guide=guide_name)], ignore_index=True)
        curves.to_csv(curves_path, index=False)
        per_image = pd.concat([per_image, pd.DataFrame({"guide": guide_name, "image": range(len(nll)),
                                                        "nll": nll.cpu().numpy()})], ignore_index=True)
        per_image.to_csv(per_image_path, index=False)
    if args.timing_rounds > 0:
        step_ms = interleaved_step_ms(guide_options, list(done["guide"]), data, args.timing_rounds, args.timing_steps)
        done["step_ms_interleaved"] = done["guide"].map(lambda name: round(step_ms[name], 2))
        done["timing_rounds"] = f"{args.timing_rounds} x {args.timing_steps} steps"
        done.to_csv(table_path, index=False)
    write_report(done, curves, per_image, args, device)


def write_report(table: pd.DataFrame, curves: pd.DataFrame, per_image: pd.DataFrame, args, device) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for guide_name, group in curves.groupby("guide", sort=False):
        ax.plot(group["epoch"], group["test_elbo"], marker="o", label=guide_name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test ELBO (nats per image)")
    ax.set_title("binarized MNIST, 784-200-200-50 tanh, Bernoulli")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.out / "guides_curves.png", dpi=120)
    plt.close(fig)
    lines = [
        f"# Guides at equal epochs ({device}; {platform.machine()}, {torch.get_num_threads()} threads)",
        "",
        f"`OMP_NUM_THREADS={torch.get_num_threads()} python scripts/bench_guides.py --epochs {args.epochs} "
        f"--num-samples {args.num_samples} "
        f"--nll-datapoints {args.nll_datapoints}"
        + "".join(f" --options '{item}'" for item in args.options) + "`",
        "",
        "Dynamically binarized MNIST, 784-200-200-50 tanh MLP, Bernoulli; Adam lr 1e-3, batch 100. "
        "test_elbo: full test split, one sample per image; test_nll: IWAE bound with "
        "nll_num_samples samples on the first nll_datapoints test images.",
        "",
        table.to_markdown(index=False),
        "",
    ]
    if {"diag", "iaf"} <= set(table["guide"]):
        diag, iaf = (table[table["guide"] == g].iloc[0] for g in ("diag", "iaf"))
        paired = ""
        if len(per_image) and {"diag", "iaf"} <= set(per_image["guide"]):
            # the same images for both guides: the standard error of the per-image differences
            nlls = per_image.pivot(index="image", columns="guide", values="nll")
            gain = nlls["diag"] - nlls["iaf"]
            paired = f" (paired over the same images: {gain.mean():.2f} +- {gain.std() / len(gain) ** 0.5:.2f})"
        lines += [
            f"IAF vs diag: test NLL {diag['test_nll'] - iaf['test_nll']:+.2f} nats better{paired} "
            f"(target >= 1.5); training time per epoch x{iaf['seconds_per_epoch'] / diag['seconds_per_epoch']:.2f} "
            "in the sequential runs above"
            + (f", time per step x{iaf['step_ms_interleaved'] / diag['step_ms_interleaved']:.2f} interleaved "
               f"(median of {iaf['timing_rounds']})"
               if "step_ms_interleaved" in table else "")
            + " (target <= 1.5).",
            "",
        ]
    (args.out / "guides.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
