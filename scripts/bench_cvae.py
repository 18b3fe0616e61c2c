"""Quadrant completion on MNIST: the deterministic baseline against the CVAE, for 1, 2 and 3
visible quadrants, next to Pyro's tutorial (examples/cvae).

For each setting it trains the baseline and then the CVAE (Pyro's architecture: 500-500
hidden units, 200 latents; grayscale MNIST, the ``bce-grayscale`` objective of Pyro's
example) for ``--epochs`` epochs each, and reports on the MNIST test split:

- the negative conditional ELBO per image, the metric of Pyro's tutorial (for the
  baseline, which has no latent variable, it is its exact -log p(y | x_visible)), from the
  same ``--num-samples`` draws per image as the likelihood, with its standard error;
- -log p(y | x_visible) by importance sampling with the recognition network as proposal
  (K = ``--num-samples``).

Each finished setting is appended to ``results/cvae.csv`` at once and skipped on rerun;
``results/cvae.md`` and ``results/cvae_completions_<N>.png`` (inputs, truth, baseline, three
CVAE samples) are written as it goes.

Usage::

    python scripts/bench_cvae.py --data-dir ../shared/data --epochs 10
    python scripts/bench_cvae.py --epochs 100 --validation-size 10000 --patience 3   # Pyro's budget
    python scripts/bench_cvae.py --epochs 100 --validation-size 5000 --patience 6 --lr-decay 0.5 --lr-patience 2
"""

import argparse
import time
from pathlib import Path

import pandas as pd
import pyro
import torch
from torchvision.utils import save_image

from ppl_vae import ModelConfig, TrainConfig, build_pair, fit, load_dataset
from ppl_vae.infer.importance import Summary, estimate_log_likelihood
from ppl_vae.models.base import empty_guide
from ppl_vae.models.quadrants import QUADRANT_LAYOUTS, baseline_nll
from ppl_vae.training.device import resolve_device

PYRO_TUTORIAL = {  # negative conditional ELBO per image on the test split, from Pyro's CVAE tutorial
    1: {"baseline": 100.4, "cvae": 71.8},
    2: {"baseline": 61.9, "cvae": 51.0},
    3: {"baseline": 25.4, "cvae": 24.2},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--dataset", default="mnist", help="mnist (full) or mnist-sample (quick)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--num-samples", type=int, default=100, help="K for -log p(y | x_visible)")
    parser.add_argument("--quadrants", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--validation-size", type=int, default=0, help="hold out N training images for validation")
    parser.add_argument("--patience", type=int, default=0, help="early stopping on the validation split (0: off)")
    parser.add_argument("--lr-decay", type=float, default=1.0,
                        help="multiply the learning rate by this when the validation ELBO stalls (1: off)")
    parser.add_argument("--lr-patience", type=int, default=3, help="epochs without improvement before each decay")
    parser.add_argument("--quadrant-layout", default="pyro", choices=QUADRANT_LAYOUTS,
                        help="pyro: p(y|z), recognition net on the filled-in digit; visible: p(y|z, x_visible)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the initial weights, shuffling and noise")
    parser.add_argument("--out", type=Path, default=Path("results"))
    args = parser.parse_args()
    device = resolve_device(args.device)
    data = load_dataset(args.dataset, args.data_dir, device, args.validation_size)
    args.out.mkdir(parents=True, exist_ok=True)
    table_path = args.out / "cvae.csv"
    table = pd.read_csv(table_path) if table_path.exists() else pd.DataFrame()
    for visible in args.quadrants:
        if len(table) and visible in set(table["visible_quadrants"]):
            print(f"{visible} quadrant(s): already in {table_path}, skipped", flush=True)
            continue
        pyro.clear_param_store()
        torch.manual_seed(args.seed)
        config = ModelConfig(z_dim=200, hidden_dims=(500, 500), likelihood="bce-grayscale", conditional="quadrants",
                             visible_quadrants=visible, quadrant_layout=args.quadrant_layout)
        model, guide = build_pair(config)
        model, guide = model.to(device), guide.to(device)
        train = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=1e-3, seed=args.seed, patience=args.patience,
                            lr_decay=args.lr_decay, lr_patience=args.lr_patience)
        start = time.perf_counter()
        baseline = model.baseline.requires_grad_(True)
        epochs_run = {}
        epochs_run["baseline"] = len(fit(baseline, empty_guide, data, train, progress=False,
            on_epoch=lambda row: print(f"baseline {visible}", row, flush=True)))
        baseline.requires_grad_(False).eval()
        epochs_run["cvae"] = len(fit(model, guide, data, train, progress=False,
                                     on_epoch=lambda row: print(f"cvae {visible}", row, flush=True)))
        train_seconds = time.perf_counter() - start
        x_visible, y = model.arguments(data.test)
        base_nll = Summary.of(torch.cat([baseline_nll(baseline, x_visible[i:i + 1000], y[i:i + 1000])
                                         for i in range(0, len(y), 1000)]))
        result, _ = estimate_log_likelihood(model, guide, x_visible, y, num_samples=args.num_samples, seed=args.seed)
        # the conditional ELBO per datapoint from the same K draws (Pyro's tutorial uses one draw: same expectation)
        cvae_elbo, cvae_nll = Summary.of(-result.elbo), Summary.of(-result.log_likelihood)
        for method, neg_elbo, nll in (("baseline", base_nll, base_nll), ("cvae", cvae_elbo, cvae_nll)):
            row = {"visible_quadrants": visible, "method": method, "neg_conditional_elbo": round(neg_elbo.mean, 2),
                   "neg_elbo_std_error": round(neg_elbo.std_error, 2), "neg_log_likelihood": round(nll.mean, 2),
                   "nll_std_error": round(nll.std_error, 2), "num_samples": args.num_samples if method == "cvae" else 0,
                   "pyro_tutorial_neg_elbo": PYRO_TUTORIAL[visible][method], "epochs": epochs_run[method],
                   "train_seconds": round(train_seconds, 1), "device": str(device), "dataset": args.dataset,
                   "layout": args.quadrant_layout, "seed": args.seed}
            table = pd.concat([table, pd.DataFrame([row])], ignore_index=True)
            print(row, flush=True)
        table.to_csv(table_path, index=False)
        batch = data.test[:12]
        save_image(model.completion_grid(batch), args.out / f"cvae_completions_{visible}.png")
        write_markdown(table, args)


def write_markdown(table: pd.DataFrame, args) -> None:
    lines = [
        "# Quadrant completion on MNIST: baseline vs CVAE",
        "",
        f"`python scripts/bench_cvae.py --epochs {args.epochs} --num-samples {args.num_samples} "
        f"--validation-size {args.validation_size} --patience {args.patience} --seed {args.seed}"
        + (f" --lr-decay {args.lr_decay} --lr-patience {args.lr_patience}" if args.lr_decay < 1 else "") + "` "
        f"({args.dataset}; test split; nats per image over the hidden pixels)",
        "",
        "neg_conditional_elbo is the metric of Pyro's tutorial (pyro_tutorial_neg_elbo); for the baseline it is "
        "its exact -log p(y|x_visible); for the CVAE the mean log weight of num_samples draws from the recognition "
        "network per image (Pyro's tutorial uses one draw: the same expectation, more noise). neg_log_likelihood is "
        "-log p(y|x_visible) by importance sampling with the recognition network as proposal (num_samples samples). "
        "Standard errors are over the test images.",
        "",
        table.to_markdown(index=False),
        "",
        "Completions: results/cvae_completions_<N>.png (rows: input, truth, baseline, three CVAE samples).",
        "",
    ]
    (args.out / "cvae.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
