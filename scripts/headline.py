"""Headline results: binarized-MNIST likelihoods against the literature, from the library's CLI.

Every row is made by the library's own commands, ``python -m ppl_vae train`` and
``python -m ppl_vae evaluate``, into a run directory under ``results/headline/<row>/``;
the table records each command, the budget (epochs run, early stopping), the wall time
and the device. The script is resumable: a finished run is not trained again, an
unfinished one goes on with ``train --resume`` from its newest checkpoint, and an
evaluation already in ``evaluation.csv`` is not repeated. Run it in the background and
run it again after an interruption.

Rows (``--rows`` picks some):

- ``dynamic-diag``, ``dynamic-iaf``: dynamically binarized MNIST, the IWAE paper's
  784-200-200-50 tanh MLP with a Bernoulli decoder (Burda et al. 2015, arXiv:1509.00519:
  VAE 86.76, IWAE k=50 84.78), 10,000 training images held out for validation; the
  paper's learning-rate schedule (``--lr-schedule burda``) scaled to the epoch budget.
- ``dynamic-iwae5``: the same, trained on the IWAE bound with k = 5 (``--elbo iwae
  --num-particles 5``; Burda et al.: 85.54), not compiled (the run predates
  ``--jit`` for the IWAE bound).
- ``dynamic-iaf-longer``, ``dynamic-iaf-iwae5``: go on from the ``dynamic-iaf`` run's
  weights (``--init-from``) at a constant rate of 1e-4 (the schedule's last), on the ELBO
  and on the IWAE bound with k = 5; their budgets add to that run's.
- ``dynamic-iaf-longer-3e-5``: goes on from ``dynamic-iaf-longer`` at 3e-5 (started with
  1,000 epochs, cut to 178 by ``--resume --epochs 178`` for time).
- ``dynamic-iaf-iwae5-more``: goes on from ``dynamic-iaf-iwae5`` on the IWAE bound (k = 5)
  at 1e-4 with another seed (started with 400 epochs, cut to 320 for time).
- ``dynamic-iaf-iwae5-more2``: goes on from ``dynamic-iaf-iwae5-more`` the same way (a third
  seed, the step compiled with ``--jit``), 400 epochs; ``dynamic-iaf-iwae5-more3`` from it, a
  fourth seed, 300 epochs (stopped early by patience 100).
- ``static-diag``, ``static-planar``, ``static-iaf``: Larochelle & Murray's static
  binarization, one hidden layer of 400 and 40 latents (Rezende & Mohamed 2015,
  arXiv:1505.05770: diagonal 89.9, planar flows K=80 85.1), early stopping on its
  validation split.
- ``static-diag-warmup``, ``static-iaf-warmup``: the diagonal and IAF guides again, with a
  linear KL warm-up over 20 epochs (as Rezende & Mohamed anneal it), at most 600 epochs,
  patience 60, the rate halved after 21 epochs without improvement (the IAF run cut to 397
  epochs by ``--resume --epochs 397`` for time).
- ``static-diag-iwae5``: the diagonal guide trained afresh on the IWAE bound (k = 5) with
  the warm-up rows' patience and rate halving, no warm-up; Rezende & Mohamed's diagonal row
  is trained on the ELBO.
- ``static-iaf-iwae5``: goes on from ``static-iaf-warmup`` on the IWAE bound (k = 5) at that
  run's last rate, 1.25e-4, with its patience and rate halving, 200 epochs.
- ``seed-grayscale``: the seed's 784-400-20 on grayscale MNIST with the BCE objective,
  test ELBO next to Pyro's examples/vae (about -101 to -102 per image, z=50, 100 epochs).
- ``latent-2d``: a z_dim = 2 run on binarized MNIST for the latent scatter figure.

All likelihood rows train with Adam (from 1e-3; the continued rows at 1e-4) and keep the
epoch with the best validation ELBO (or, trained on the IWAE bound, the best validation
IWAE bound where ``metrics.csv`` has ``valid_iwae``). The first static rows stop after 10
epochs without a better one and halve the learning rate after 5 such epochs; the dynamic
rows follow Burda et al.'s schedule, compile the step with ``--jit`` and stop only after
100 epochs without improvement.

Usage::

    python scripts/headline.py --data-dir ../shared/data [--rows dynamic-diag ...] [--epochs-scale 0.5]
"""

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd

IWAE_NET = ["--hidden-dims", "200", "200", "--activation", "tanh", "--z-dim", "50"]
RM_NET = ["--hidden-dims", "400", "--z-dim", "40"]
DYNAMIC_DATA = ["--dataset", "binarized-mnist", "--validation-size", "10000", "--patience", "100", "--batch-size", "100"]
DYNAMIC = [*DYNAMIC_DATA, "--lr-schedule", "burda"]


IAF8 = ["--guide", "iaf", "--num-flows", "8"]
IWAE5 = ["--elbo", "iwae", "--num-particles", "5"]


def continued(source: str, lr: str, seed: str, data: list[str] = DYNAMIC_DATA) -> list[str]:
    """Flags going on from the ``source`` row's run ({out}: the results folder) at a constant rate."""
    return [*data, "--lr", lr, "--seed", seed, "--init-from", f"{{out}}/{source}"]


CONTINUED = continued("dynamic-iaf", "1e-4", "1")  # the schedule's last rate, another seed
EPOCHS_LONGER, EPOCHS_IWAE5 = 1000, 233  # dynamic-iaf-iwae5 was started with 330 and cut by --resume --epochs 233


def static(patience: str, lr_patience: str) -> list[str]:
    """Static binarization: stop after ``patience`` epochs without a better validation ELBO,
    halve the rate after ``lr_patience`` + 1 such epochs."""
    return ["--dataset", "binarized-mnist-static", "--patience", patience, "--batch-size", "100",
            "--lr-decay", "0.5", "--lr-patience", lr_patience]


STATIC = static("10", "4")
STATIC_WARMUP = [*static("60", "20"), "--warmup-epochs", "20"]  # the KL weight warmed up over 20 epochs
BURDA = "Burda et al. 2015, VAE (k=1) 86.76; IWAE (k=50) 84.78"
BURDA_IWAE5 = "Burda et al. 2015, IWAE (k=5) 85.54"
REZENDE_DIAG = "Rezende & Mohamed 2015, diagonal 89.9"
REZENDE_PLANAR = "Rezende & Mohamed 2015, planar K=80 85.1"

# name -> (train flags, epochs, K for the test NLL (0: ELBO only), published number, its source)
ROWS = {
    "seed-grayscale": (["--dataset", "mnist", "--likelihood", "bce-grayscale", "--hidden-dims", "400",
                        "--z-dim", "20"], 100, 0, -101.5, "Pyro examples/vae: test ELBO about -101 to -102 (z=50, 100 epochs)"),
    "latent-2d": (["--dataset", "binarized-mnist", "--hidden-dims", "400", "--z-dim", "2"], 20, 0, None, ""),
    "dynamic-diag": ([*DYNAMIC, "--jit", *IWAE_NET, "--guide", "diag"], 2000, 5000, 86.76, BURDA),
    "dynamic-iaf": ([*DYNAMIC, "--jit", *IWAE_NET, *IAF8], 700, 5000, 86.76, BURDA),
    "dynamic-iwae5": ([*DYNAMIC, *IWAE_NET, "--guide", "diag", *IWAE5], 300, 5000, 85.54, BURDA_IWAE5),
    "dynamic-iaf-longer": ([*CONTINUED, "--jit", *IWAE_NET, *IAF8], EPOCHS_LONGER, 5000, 86.76, BURDA),
    "dynamic-iaf-iwae5": ([*CONTINUED, *IWAE_NET, *IAF8, *IWAE5], EPOCHS_IWAE5, 5000, 85.54, BURDA_IWAE5),
    "dynamic-iaf-longer-3e-5": ([*continued("dynamic-iaf-longer", "3e-5", "2"), "--jit", *IWAE_NET, *IAF8], 178,
                                5000, 86.76, BURDA),
    "dynamic-iaf-iwae5-more": ([*continued("dynamic-iaf-iwae5", "1e-4", "2"), *IWAE_NET, *IAF8, *IWAE5], 320, 5000,
                               85.54, BURDA_IWAE5),
    "dynamic-iaf-iwae5-more2": ([*continued("dynamic-iaf-iwae5-more", "1e-4", "3"), *IWAE_NET, *IAF8, *IWAE5, "--jit"],
                                400, 5000, 85.54, BURDA_IWAE5),
    "dynamic-iaf-iwae5-more3": ([*continued("dynamic-iaf-iwae5-more2", "1e-4", "4"), *IWAE_NET, *IAF8, *IWAE5,
                                 "--jit"], 300, 5000, 85.54, BURDA_IWAE5),
    "static-diag": ([*STATIC, *RM_NET, "--guide", "diag"], 100, 5000, 89.9, REZENDE_DIAG),
    "static-diag-warmup": ([*STATIC_WARMUP, *RM_NET, "--guide", "diag", "--jit"], 600, 5000, 89.9, REZENDE_DIAG),
    "static-diag-iwae5": ([*static("60", "20"), *RM_NET, "--guide", "diag", *IWAE5, "--jit"], 600, 5000, 89.9,
                          REZENDE_DIAG),
    "static-iaf-warmup": ([*STATIC_WARMUP, *RM_NET, *IAF8, "--jit"], 397, 5000, 85.1, REZENDE_PLANAR),
    # static-iaf-warmup: started with 600 epochs, cut to 397 by --resume --epochs 397
    "static-iaf-iwae5": ([*continued("static-iaf-warmup", "1.25e-4", "1", static("60", "20")), *RM_NET, *IAF8, *IWAE5,
                          "--jit"], 200, 5000, 85.1, REZENDE_PLANAR),
    "static-planar": ([*STATIC, *RM_NET, "--guide", "planar", "--num-flows", "16", "--jit"], 200, 5000, 85.1, REZENDE_PLANAR),
    "static-iaf": ([*STATIC, *RM_NET, *IAF8, "--jit"], 200, 5000, 85.1, REZENDE_PLANAR),
}


def run(command: list[str]) -> None:
    print("$", shlex.join(command), flush=True)
    subprocess.run(command, check=True)


def train_and_evaluate(name: str, out: Path, data_dir: str, epochs_scale: float, evaluate_now: bool) -> dict | None:
    flags, epochs, num_samples, published, source = ROWS[name]
    flags = [flag.format(out=out) for flag in flags]
    run_dir = out / name
    train = [sys.executable, "-m", "ppl_vae", "train", *flags, "--epochs", str(max(1, round(epochs * epochs_scale))),
             "--data-dir", data_dir, "--out", str(run_dir), "--no-progress", "--checkpoint-every-seconds", "300"]
    if not (run_dir / "checkpoint.pt").exists():
        if (run_dir / "checkpoints").is_dir():  # an interrupted run
            run([sys.executable, "-m", "ppl_vae", "train", "--resume", str(run_dir), "--no-progress"])
        elif (run_dir / "metrics.csv").exists():  # a finished run whose weights were not kept (a clone)
            print(f"{name}: trained earlier, weights not here; tables from its files", flush=True)
        else:
            run(train)
    evaluate = [sys.executable, "-m", "ppl_vae", "evaluate", str(run_dir), "--num-samples", str(num_samples),
                "--no-progress"]
    evaluation_csv = run_dir / "evaluation.csv"
    done = pd.read_csv(evaluation_csv) if evaluation_csv.exists() else pd.DataFrame({"num_samples": []})
    if num_samples and num_samples not in set(done["num_samples"]):
        if not evaluate_now:
            return None
        run(evaluate)
    metrics = pd.read_csv(run_dir / "metrics.csv")
    config = json.loads((run_dir / "config.json").read_text())
    selection = next((key for key in ("valid_iwae", "valid_elbo") if key in metrics), None)  # as the trainer kept
    best = metrics.loc[metrics[selection].idxmax()] if selection else metrics.iloc[-1]
    row = {"row": name, "dataset": config["dataset"], "guide": config["model"]["guide"],
           "epochs_run": int(metrics["epoch"].iloc[-1]), "epoch_kept": int(best["epoch"]),
           "test_elbo": float(best["test_elbo"]), "train_seconds": float(metrics["seconds"].iloc[-1])}
    if num_samples:
        evaluation = pd.read_csv(evaluation_csv)
        ev = evaluation[evaluation["num_samples"] == num_samples].iloc[-1]
        row.update({"test_nll": float(ev["nll"]), "nll_std_error": float(ev["nll_std_error"]),
                    "num_samples": num_samples, "active_units": int(ev["active_units"]),
                    "eval_seconds": float(ev["seconds"])})
    row.update({"published": published, "source": source, "device": config["device"],
                "train_command": shlex.join(["ppl-vae", *train[3:]]),
                "evaluate_command": shlex.join(["ppl-vae", *evaluate[3:]]) if num_samples else ""})
    return row


def summary(table: pd.DataFrame) -> str:
    """A compact markdown table for the README: number, published number, budget, time, device, command."""
    lines = ["| row | guide | test NLL (K) | test ELBO | published | budget (epochs run, kept) | train / eval time | "
             "device | command |", "| --- | --- | ---: | ---: | --- | --- | ---: | --- | --- |"]
    for row in table.to_dict("records"):
        nll = f"{row['test_nll']:.2f} ± {row['nll_std_error']:.2f} ({int(row['num_samples'])})" \
            if pd.notna(row.get("test_nll")) else "-"
        eval_time = f" / {row['eval_seconds'] / 60:.0f} min" if pd.notna(row.get("eval_seconds")) else ""
        published = f"{row['published']} ({row['source']})" if pd.notna(row.get("published")) else "-"
        lines.append(f"| {row['row']} | {row['guide']} | {nll} | {row['test_elbo']:.2f} | {published} | "
                     f"{int(row['epochs_run'])}, {int(row['epoch_kept'])} | {row['train_seconds'] / 60:.0f} min{eval_time} | "
                     f"{row['device']} | `{row['train_command']}` |")
    return "\n".join(lines) + "\n"


def figures(out: Path, data_dir: str) -> None:
    """The latent scatter (z_dim = 2), interpolations, and the curves of all guides per setting."""
    import torch

    from ppl_vae.cli.figures import plot_latent_scatter, plot_runs, save_interpolations
    from ppl_vae.cli.run_directory import load_run

    done = lambda name: (out / name / "checkpoint.pt").exists()  # noqa: E731
    if done("latent-2d"):
        _, guide, data = load_run(out / "latent-2d", torch.device("cpu"), data_dir)
        x = torch.bernoulli(data.test, generator=torch.Generator().manual_seed(0))
        plot_latent_scatter(guide, x, data.test_labels, out / "latent_scatter.png")
    if done("dynamic-diag"):
        model, guide, data = load_run(out / "dynamic-diag", torch.device("cpu"), data_dir)
        x = torch.bernoulli(data.test[:16], generator=torch.Generator().manual_seed(0))
        save_interpolations(model, guide, x, out / "interpolations.png")
    for setting in ("dynamic", "static"):
        runs = {name.removeprefix(f"{setting}-"): curve(out / name)
                for name in ROWS if name.startswith(setting) and (out / name / "metrics.csv").exists()}
        if runs:
            plot_runs(runs, out / f"curves_{setting}.png", "valid_elbo",
                      f"{setting} binarized MNIST: validation ELBO of each guide")


def epochs_before(run_dir: Path) -> int:
    """The kept epochs of the chain of runs ``run_dir`` started from (``--init-from``; the
    source rows are ``run_dir``'s siblings), 0 for a run started afresh."""
    source = json.loads((run_dir / "config.json").read_text()).get("init_from")
    if not source:
        return 0
    source_dir = run_dir.parent / Path(source["path"]).parent.name
    return source["epoch"] + (epochs_before(source_dir) if (source_dir / "config.json").exists() else 0)


def curve(run_dir: Path) -> pd.DataFrame:
    """A run's metrics, its epochs counted on from those of the runs it started from."""
    metrics = pd.read_csv(run_dir / "metrics.csv")
    return metrics.assign(epoch=metrics["epoch"] + epochs_before(run_dir))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--epochs-scale", type=float, default=1.0, help="scale every row's epoch budget")
    parser.add_argument("--out", type=Path, default=Path("results/headline"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    table_path = args.out / "headline.csv"
    table = pd.read_csv(table_path) if table_path.exists() else pd.DataFrame({"row": []})
    # all training first, then the (long) K = 5000 evaluations
    for phase, name in [(phase, name) for phase in ("train", "evaluate") for name in args.rows]:
        row = train_and_evaluate(name, args.out, args.data_dir, args.epochs_scale, evaluate_now=phase == "evaluate")
        if row is None:
            continue
        table = pd.concat([table[table["row"] != name], pd.DataFrame([row])], ignore_index=True)
        table.to_csv(table_path, index=False)
        (args.out / "headline.md").write_text(table.drop(columns=["train_command", "evaluate_command"])
                                              .to_markdown(index=False, floatfmt=".2f") + "\n")
        (args.out / "headline_summary.md").write_text(summary(table))
        print(f"{name}: done", flush=True)
    figures(args.out, args.data_dir)


if __name__ == "__main__":
    main()
