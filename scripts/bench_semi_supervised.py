"""The semi-supervised VAE (M2) on MNIST with 100, 600, 1000 and 3000 labels, next to Pyro's example.

Each run trains ``--conditional semi-supervised`` through the library's own
:func:`~ppl_vae.training.trainer.fit` on full MNIST (pixel intensities, the Bernoulli
log-likelihood of Pyro's example, ``bce-grayscale``), with the last 10,000 training images
held out as the validation split and the labels of N of the other 50,000 kept (balanced over
the classes, drawn with the run's seed). The settings are those of Pyro's
``examples/vae/ss_vae_M2.py``: z_dim 50, one hidden layer of 500 softplus units, batch 200,
Adam lr 4.2e-4, auxiliary loss multiplier 46, the label enumerated in parallel under
TraceEnum_ELBO. The test accuracy is the classifier's on the 10,000 test images.

Each finished run is appended to ``results/semi_supervised.csv`` at once; a rerun skips the
runs already there. The cost of an enumerated step against the plain VAE's on the same
batches (same networks, interleaved rounds, median) goes into ``results/semi_supervised.md``.

Usage::

    python scripts/bench_semi_supervised.py --data-dir ../shared/data --epochs 1
"""

import argparse
import platform
import statistics
import time
from pathlib import Path

import pandas as pd
import pyro
import torch

from ppl_vae import ModelConfig, SVIStep, TrainConfig, build_pair, fit, load_dataset
from ppl_vae.data import semi_supervised
from ppl_vae.infer.elbos import make_elbo
from ppl_vae.training.device import resolve_device
from ppl_vae.training.subnormals import flush_subnormals

PYRO = {3000: "0.9582 ± 0.0012", 1000: "0.9487", 600: "0.9437", 100: "0.9319"}  # Pyro's tutorial, test accuracy
PYRO_LR = 4.2e-4  # Pyro's example's -lr
SETTING = ["labels", "labelled_every", "lr", "epochs"]  # a row of the summary; a run is a setting and a seed
FORMATS = {"test_accuracy": ".4f", "std_error": ".4f", "at_best_valid": ".4f", "test_elbo": ".2f",
           "seconds_per_epoch": ".1f", "pyro_example": ""}  # the summary's columns
NETWORKS = {"z_dim": 50, "hidden_dims": (500,), "activation": "softplus", "likelihood": "bce-grayscale"}


def step_ms(data, rounds: int, steps: int) -> dict[str, float]:
    """Milliseconds per step: the enumerated (unlabelled) M2 step and the plain VAE's, interleaved."""
    batches = list(data.batches("train", 200, shuffle=True))[:steps]
    steps_of = {}
    for name, config, elbo in (("semi-supervised", ModelConfig(model="semi-supervised", num_classes=10, **NETWORKS), "enum"),
                               ("vae", ModelConfig(**NETWORKS), "trace")):
        model, guide = build_pair(config)
        steps_of[name] = SVIStep(model.to(data.train.device), guide.to(data.train.device), make_elbo(elbo), lr=PYRO_LR)
        for x in batches[:3]:
            steps_of[name](x)
    times = {name: [] for name in steps_of}
    for _ in range(rounds):
        for name, step in steps_of.items():
            start = time.perf_counter()
            for x in batches:
                step(x)
            times[name].append((time.perf_counter() - start) / len(batches) * 1e3)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--labels", type=int, nargs="+", default=[100, 600, 1000, 3000])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--labelled-every", type=int, default=0,
                        help="one training batch in K labelled, cycling the labelled images (0: once per epoch)")
    parser.add_argument("--lr", type=float, default=PYRO_LR,
                        help=f"Adam's learning rate (default {PYRO_LR:g}, Pyro's example's flag)")
    parser.add_argument("--timing-rounds", type=int, default=5)
    parser.add_argument("--timing-steps", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("results"))
    args = parser.parse_args()
    flush_subnormals()  # as the ppl-vae command does, before any parallel work (ppl_vae.training.subnormals)
    device = resolve_device(args.device)
    data = load_dataset("mnist", args.data_dir, device, validation_size=10000)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "semi_supervised.csv"
    table = pd.read_csv(path) if path.exists() else pd.DataFrame()
    if len(table) and "labelled_every" not in table:
        table.insert(2, "labelled_every", 0)  # rows written before the option existed
    if len(table) and "lr" not in table:
        table.insert(3, "lr", PYRO_LR)
    for labels in args.labels:
        for seed in args.seeds:
            run = {"labels": labels, "seed": seed, "labelled_every": args.labelled_every, "lr": args.lr,
                   "epochs": args.epochs}
            if len(table) and (table[list(run)] == pd.Series(run)).all(axis=1).any():
                print(f"{labels} labels, seed {seed}: already in {path}, skipped", flush=True)
                continue
            pyro.clear_param_store()
            torch.manual_seed(seed)
            config = ModelConfig(model="semi-supervised", num_classes=10, num_labels=labels,
                                 labelled_every=args.labelled_every, **NETWORKS)
            model, guide = build_pair(config)
            train = TrainConfig(epochs=args.epochs, batch_size=200, lr=args.lr, elbo="enum", seed=seed)
            subset = semi_supervised(data, labels, seed, config.labelled_every)
            metrics = fit(model.to(device), guide.to(device), subset, train, progress=False,
                          on_epoch=lambda row: print(labels, seed, row, flush=True))
            last, best = metrics.iloc[-1], metrics.loc[metrics["valid_accuracy"].idxmax()]
            row = {**run, "test_accuracy": last["test_accuracy"], "valid_accuracy": last["valid_accuracy"],
                   "test_accuracy_at_best_valid": best["test_accuracy"], "test_elbo": round(last["test_elbo"], 2),
                   "seconds_per_epoch": round(last["seconds"] / args.epochs, 1), "device": str(device)}
            print(row, flush=True)
            table = pd.concat([table, pd.DataFrame([row])], ignore_index=True)
            table.to_csv(path, index=False)
    timing = step_ms(data, args.timing_rounds, args.timing_steps) if args.timing_rounds else {}
    write_report(table, timing, args, device)


def commands(table: pd.DataFrame, threads: int) -> list[str]:
    """The command behind each setting of the table: one line per :data:`SETTING`."""
    lines = []
    for (labels, every, lr, epochs), runs in table.groupby(SETTING):
        lines.append(f"`OMP_NUM_THREADS={threads} python scripts/bench_semi_supervised.py --data-dir ../shared/data "
                     f"--epochs {epochs} --labels {labels} --seeds {' '.join(map(str, sorted(runs['seed'])))}"
                     + (f" --labelled-every {every}" if every else "") + (f" --lr {lr:g}" if lr != PYRO_LR else "")
                     + " --timing-rounds 0`  ")
    return lines


def write_report(table: pd.DataFrame, timing: dict, args, device) -> None:
    summary = table.groupby(SETTING).agg(
        runs=("seed", "count"), test_accuracy=("test_accuracy", "mean"),
        std_error=("test_accuracy", lambda a: a.std() / len(a) ** 0.5),
        **({"at_best_valid": ("test_accuracy_at_best_valid", "mean")} if "test_accuracy_at_best_valid" in table else {}),
        test_elbo=("test_elbo", "mean"), seconds_per_epoch=("seconds_per_epoch", "mean"))
    summary["pyro_example"] = [PYRO.get(n, "") for n, *_ in summary.index]
    summary = summary.reset_index()
    lines = [
        f"# The semi-supervised VAE (M2) on MNIST ({device}; {platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__})",
        "",
        *commands(table, torch.get_num_threads()),
        "",
        "Budget: the column epochs, per run (Pyro's example trains for up to 50), on 50,000 training images "
        "(the last 10,000 of MNIST's training split are the validation split), one label draw per seed. Pyro's "
        "settings: z_dim 50, 500 softplus units, batch 200, Adam lr 4.2e-4 (unless the column lr says otherwise), "
        "auxiliary multiplier 46, the label enumerated under TraceEnum_ELBO. test_accuracy: the classifier q(y|x) "
        "on the 10,000 test images after the last epoch, the mean over the draws with its standard error; "
        "test_elbo: the ELBO per image with the label summed out. "
        "labelled_every: 0, each labelled image once per epoch as in Pyro's example; K, one batch in K labelled, "
        "cycling through the labelled images. at_best_valid: the test accuracy at the epoch of the best validation "
        "accuracy, the one Pyro's example prints. pyro_example: the test accuracy Pyro's tutorial reports.",
        "",
        summary.to_markdown(index=False, floatfmt=[FORMATS.get(column, "g") for column in summary]),
        "",
        "Every run:",
        "",
        table.to_markdown(index=False),
        "",
    ]
    if timing:
        lines += [f"Cost of a step, interleaved ({args.timing_rounds} rounds of {args.timing_steps} steps, median): the "
                  f"enumerated unlabelled M2 step {timing['semi-supervised']:.1f} ms, the plain VAE's on the same "
                  f"batches and networks {timing['vae']:.1f} ms: x{timing['semi-supervised'] / timing['vae']:.2f} "
                  "(the decoder and the z encoder run once per class, in one vectorized pass).", ""]
    (args.out / "semi_supervised.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
