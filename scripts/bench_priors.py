"""Priors and a second stochastic layer at equal epochs, on dynamically binarized MNIST.

The prior rows use Burda et al.'s one-layer architecture (784-200-200-50 tanh MLP encoder,
mirrored decoder, Bernoulli), the standard, mixture, VampPrior and flow priors each with
the diagonal guide and with the 8-step IAF guide. The two-layer rows use Burda et al.'s
two-layer architecture as their paper describes it (``--model hierarchical``:
784-100-100-z1(100)-50-50-z2(50)); the ``hierarchical200`` rows use the wider layers of their
released code (``--layer-widths 200 100``: 784-200-200-z1(100)-100-100-z2(50)). Every
row trains with Adam lr 1e-3 (batch 100 unless a row says otherwise), for the same number of epochs and seed, through
the library's own :func:`~ppl_vae.training.trainer.fit`; the test NLL is the library's
importance-sampled bound (:func:`~ppl_vae.infer.importance.estimate_log_likelihood`) with
K samples on the first ``--nll-datapoints`` test images, binarized once with seed 0, so
rows compare over the same images and each comparison gets a paired standard error.

Each finished row is appended to ``results/priors.csv`` at once (and its per-image NLLs
to ``results/priors_per_image.csv``); a rerun skips the rows already there, so the
benchmark resumes after an interruption. ``results/priors.md`` is rewritten after every row.
Long rows can be trained by ``ppl-vae train`` instead, with checkpoints and ``--resume``, and
scored here with ``--from-runs ROW=RUN_DIR``: the run's config must be the row's (checked).

Usage::

    OMP_NUM_THREADS=1 python scripts/bench_priors.py --data-dir ../shared/data --epochs 10
"""

import argparse
import platform
import re
import time
from pathlib import Path

import pandas as pd
import pyro
import torch
from torch import nn

from ppl_vae import ModelConfig, TrainConfig, build_pair, fit, load_dataset
from ppl_vae.cli.run_directory import read_config
from ppl_vae.infer.importance import active_units, estimate_log_likelihood
from ppl_vae.training.checkpoints import config_differences, load_pair
from ppl_vae.training.device import resolve_device
from ppl_vae.training.subnormals import flush_subnormals

ONE_LAYER = {"z_dim": 50, "hidden_dims": (200, 200), "activation": "tanh", "likelihood": "bernoulli"}
TWO_LAYERS = {"model": "hierarchical", "z_dims": (100, 50), "layer_widths": (100, 50), "activation": "tanh",
              "likelihood": "bernoulli"}
# the widths of Burda et al.'s released code (github.com/yburda/iwae, experiments.py), wider than the paper's text
TWO_LAYERS_CODE = {**TWO_LAYERS, "layer_widths": (200, 100)}
IAF8 = {"guide": "iaf", "guide_options": {"num_flows": 8}}
PRIOR_OPTIONS = {"standard": {}, "mixture": {"num_components": 100}, "vamp": {"num_pseudo_inputs": 100},
                 "flow": {"num_flows": 2}}
# name -> (model config, training options); the key comparisons first, so a partial run has them
ROWS = {
    "vae-standard-diag": ({**ONE_LAYER, "prior": "standard"}, {}),
    "vae-vamp-diag": ({**ONE_LAYER, "prior": "vamp"}, {}),
    "hierarchical-standard-diag": ({**TWO_LAYERS, "prior": "standard"}, {}),
    "vae-mixture-diag": ({**ONE_LAYER, "prior": "mixture"}, {}),
    "vae-flow-diag": ({**ONE_LAYER, "prior": "flow"}, {}),
    "vae-standard-iaf": ({**ONE_LAYER, **IAF8, "prior": "standard"}, {}),
    "vae-vamp-iaf": ({**ONE_LAYER, **IAF8, "prior": "vamp"}, {}),
    "vae-mixture-iaf": ({**ONE_LAYER, **IAF8, "prior": "mixture"}, {}),
    "vae-flow-iaf": ({**ONE_LAYER, **IAF8, "prior": "flow"}, {}),
    "hierarchical-standard-diag-iwae5": ({**TWO_LAYERS, "prior": "standard"}, {"elbo": "iwae", "num_particles": 5}),
    # Tomczak & Welling's number of pseudo-inputs; KL warm-up (Sonderby et al. 2016) for both depths
    "vae-vamp500-diag": ({**ONE_LAYER, "prior": "vamp", "prior_options": {"num_pseudo_inputs": 500}}, {}),
    "vae-standard-diag-warmup5": ({**ONE_LAYER, "prior": "standard"}, {"warmup_epochs": 5}),
    "hierarchical-standard-diag-warmup5": ({**TWO_LAYERS, "prior": "standard"}, {"warmup_epochs": 5}),
    # Sonderby et al.'s (arXiv:1602.02282) long warm-up, which keeps more units of the top layer active
    "vae-standard-diag-warmup100": ({**ONE_LAYER, "prior": "standard"}, {"warmup_epochs": 100}),
    "hierarchical-standard-diag-warmup100": ({**TWO_LAYERS, "prior": "standard"}, {"warmup_epochs": 100}),
    # both depths on the IWAE bound with k = 5, as in Burda et al.'s IWAE rows
    "vae-standard-diag-iwae5": ({**ONE_LAYER, "prior": "standard"}, {"elbo": "iwae", "num_particles": 5}),
    # both depths with Burda et al.'s optimization: batches of 20 and their stepwise decay of the rate
    "vae-standard-diag-burda": ({**ONE_LAYER, "prior": "standard"}, {"batch_size": 20, "lr_schedule": "burda"}),
    "hierarchical-standard-diag-burda": ({**TWO_LAYERS, "prior": "standard"}, {"batch_size": 20, "lr_schedule": "burda"}),
    # the warm-up-100 rows' finished runs going on at a tenth of the rate (a two-stage schedule, like the end of
    # Burda et al.'s): trained by `ppl-vae train --init-from RUN --lr 1e-4`, scored with --from-runs only
    "vae-standard-diag-warmup100-lr1e-4": ({**ONE_LAYER, "prior": "standard"}, {"lr": 1e-4, "init_output_bias": False}),
    "hierarchical-standard-diag-warmup100-lr1e-4": ({**TWO_LAYERS, "prior": "standard"}, {"lr": 1e-4, "init_output_bias": False}),
    # two layers as in Burda et al.'s code: 784-200-200-100 and 100-100-100-50, the generative networks mirrored
    "hierarchical200-standard-diag-warmup100": ({**TWO_LAYERS_CODE, "prior": "standard"}, {"warmup_epochs": 100}),
    "hierarchical200-standard-diag-warmup100-lr1e-4": ({**TWO_LAYERS_CODE, "prior": "standard"},
                                                       {"lr": 1e-4, "init_output_bias": False}),
    "hierarchical200-standard-diag-burda": ({**TWO_LAYERS_CODE, "prior": "standard"},
                                            {"batch_size": 20, "lr_schedule": "burda"}),
}
# rows that start from another row's finished run at a tenth of its rate: row -> that row
WARM_STARTED = {name: name.removesuffix("-lr1e-4") for name in ROWS if name.endswith("-lr1e-4")}


def baseline(name: str) -> str:
    """A row's reference for the paired difference: a two-layer row's one-layer twin (same
    prior, guide and training), else the same guide with the standard prior, one layer."""
    twin = re.sub(r"^hierarchical\d*-", "vae-", name)
    if twin != name and twin in ROWS:
        return twin
    return "vae-standard-iaf" if name.endswith("-iaf") else "vae-standard-diag"


BASELINES = {name: baseline(name) for name in ROWS}


def config_of(name: str) -> ModelConfig:
    options, _ = ROWS[name]
    return ModelConfig(**{"prior_options": PRIOR_OPTIONS[options["prior"]], **options})


def train_row(name: str, data, args, device) -> tuple[nn.Module, nn.Module, pd.DataFrame, TrainConfig]:
    """Train one row from the seed: ``(model, guide, metrics, train config)``."""
    pyro.clear_param_store()
    torch.manual_seed(args.seed)
    model, guide = build_pair(config_of(name))
    model, guide = model.to(device), guide.to(device)
    train = train_config_of(name, args)
    metrics = fit(model, guide, data, train, progress=False, on_epoch=lambda row: print(name, row, flush=True))
    return model, guide, metrics, train


def train_config_of(name: str, args) -> TrainConfig:
    """The training settings of a row: the benchmark's, with the row's own options over them."""
    return TrainConfig(**{"epochs": args.epochs, "batch_size": 100, "lr": 1e-3, "seed": args.seed,
                          "init_output_bias": args.init_output_bias, **ROWS[name][1]})


def load_row(name: str, run_dir: Path, args, device) -> tuple[nn.Module, nn.Module, pd.DataFrame, TrainConfig]:
    """A row trained by ``ppl-vae train`` (with checkpoints, resumable) instead of here: the
    finished run directory's pair and metrics, after checking that its checkpoint holds the
    row's model and its config the row's training, so that it scores as the row would.

    A row of :data:`WARM_STARTED` must have been started (``--init-from``) from the finished run
    of its origin row, itself checked with the epochs it had then; its metrics continue the
    origin's, so the table counts the epochs and seconds of both stages.

    :raises ValueError: naming the run and what differs, or why it is not a finished run.
    """
    run_config = read_config(run_dir)
    train = TrainConfig(**run_config["train"])
    model, guide, config = load_pair(run_dir, device)  # CheckpointError if it has no checkpoint.pt
    differing = (config_differences(config.to_dict(), config_of(name).to_dict())
                 + config_differences(train.to_dict(), train_config_of(name, args).to_dict()))
    if differing:
        raise ValueError(f"{run_dir} was not trained as row {name}: {'; '.join(differing)}")
    metrics = pd.read_csv(Path(run_dir) / "metrics.csv")
    if name in WARM_STARTED:
        origin = run_config.get("init_from")
        if origin is None:
            raise ValueError(f"{run_dir} was not started from a run of row {WARM_STARTED[name]} (ppl-vae train --init-from)")
        origin_args = argparse.Namespace(**{**vars(args), "epochs": origin["epoch"]})
        *_, before, _ = load_row(WARM_STARTED[name], Path(origin["path"]).parent, origin_args, device)
        metrics = pd.concat([before, metrics.assign(epoch=metrics["epoch"] + before["epoch"].iloc[-1],
                                                    seconds=metrics["seconds"] + before["seconds"].iloc[-1])])
    return model, guide, metrics, train


def run_row(name: str, trained, x_nll: torch.Tensor, args, device) -> tuple[dict, torch.Tensor]:
    """Estimate a trained row's test NLL: its table row and per-image NLLs."""
    config = config_of(name)
    model, guide, metrics, train = trained
    pyro.clear_param_store()  # the pair's own weights only, whichever rows ran before
    start = time.perf_counter()
    result, means = estimate_log_likelihood(model, guide, x_nll, num_samples=args.num_samples, seed=args.seed)
    nll = -result.log_likelihood
    units = {site: int(active_units(mean).sum()) for site, mean in means.items()}
    row = {
        "name": name, "model": config.model, "prior": config.prior, "guide": config.guide,
        "guide_options": str(config.guide_options or ""), "prior_options": str(config.prior_options or ""),
        "elbo": train.elbo, "num_particles": train.num_particles, "epochs": int(metrics["epoch"].iloc[-1]),
        "batch_size": train.batch_size, "lr_schedule": train.lr_schedule,
        "init_output_bias": train.init_output_bias,
        "test_elbo": round(metrics["test_elbo"].iloc[-1], 2), "test_nll": round(nll.mean().item(), 2),
        "nll_std_error": round((nll.std() / len(nll) ** 0.5).item(), 2),
        "nll_num_samples": args.num_samples, "nll_datapoints": len(x_nll),
        "active_units": " ".join(f"{site}:{count}" for site, count in units.items()),
        "seconds_per_epoch": round(metrics["seconds"].iloc[-1] / metrics["epoch"].iloc[-1], 1),
        "nll_seconds": round(time.perf_counter() - start, 1), "device": str(device),
    }
    return row, nll


def paired(per_image: pd.DataFrame, name: str, baseline: str) -> tuple[float, float] | None:
    """``(baseline NLL - row NLL, its standard error)`` over the same images, or None."""
    if name == baseline or not {name, baseline} <= set(per_image["name"]):
        return None
    nlls = per_image.pivot(index="image", columns="name", values="nll")
    gain = (nlls[baseline] - nlls[name]).dropna()  # the images both rows were scored on
    return gain.mean(), gain.std() / len(gain) ** 0.5


def warm_start_notes(names: set[str], epochs: int) -> list[str]:
    """The report's lines on the rows of :data:`WARM_STARTED` among ``names``."""
    notes = [f"`{name}` goes on from the finished run of `{origin}` at lr {ROWS[name][1]['lr']:g} for {epochs} "
             f"more epochs (`ppl-vae train --init-from RUN --lr {ROWS[name][1]['lr']:g}`: Adam's state afresh, no "
             "warm-up); its epochs and seconds count both stages." for name, origin in WARM_STARTED.items() if name in names]
    return ["", *notes] if notes else []


def write_report(table: pd.DataFrame, per_image: pd.DataFrame, args, device, path: Path) -> None:
    table = table.copy()
    gains = [paired(per_image, name, BASELINES[name]) for name in table["name"]]
    table["vs"] = [BASELINES[name] if gain else "" for name, gain in zip(table["name"], gains)]
    table["nll_gain"] = [f"{g:+.2f} ± {se:.2f}" if (g, se) != (None, None) else "" for g, se in
                         (gain or (None, None) for gain in gains)]
    runs = list(table.groupby("nll_datapoints", sort=False))
    init_flag = (" --init-output-bias" if args.init_output_bias else "") + (f" --seed {args.seed}" if args.seed else "")
    columns = ["name", "model", "prior", "guide", "elbo", "num_particles", "batch_size", "lr_schedule", "epochs",
               "test_elbo", "test_nll",
               "nll_std_error", "vs", "nll_gain", "active_units", "seconds_per_epoch", "nll_seconds"]
    lines = [
        f"# Priors and two stochastic layers at equal epochs ({device}; {platform.machine()}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__})",
        "",
        *[f"`python scripts/bench_priors.py --data-dir ../shared/data --epochs {args.epochs} --num-samples "
          f"{args.num_samples} --nll-datapoints {n}{init_flag} --name {path.stem} --rows {' '.join(group['name'])}`"
          + ("  " if i < len(runs) - 1 else "")
          for i, (n, group) in enumerate(runs)],
        "",
        f"Dynamically binarized MNIST; Adam lr 1e-3, {args.epochs} epochs, seed {args.seed}, for every row; "
        "batch 100 and a constant rate unless the columns batch_size and lr_schedule say otherwise (burda: Burda "
        "et al.'s stepwise decay to a tenth, scaled to the epochs). One layer (`vae`): 784-200-200-50 tanh, "
        "Bernoulli (Burda et al.'s one-layer model); two layers "
        "(`hierarchical`): 784-100-100-100-50-50-50 tanh (their two-layer model as the paper describes it; rows "
        "`hierarchical200-*`: 784-200-200-100-100-100-50, the widths of their released code). iaf: 8 IAF steps. "
        f"Priors: mixture of {PRIOR_OPTIONS['mixture']['num_components']} Gaussians, VampPrior with "
        f"{PRIOR_OPTIONS['vamp']['num_pseudo_inputs']} pseudo-inputs, flow of "
        f"{PRIOR_OPTIONS['flow']['num_flows']} MAF steps. "
        + ("The decoder's output bias starts at the log-odds of the mean training image (`init_output_bias`). "
           if args.init_output_bias else "The decoder's output bias starts at zero (PyTorch's default initialization). ")
        + "test_elbo: full test split, one sample per image. "
        f"test_nll: the IWAE bound with K = {args.num_samples} on the first nll_datapoints test images "
        "(binarized once, seed 0). nll_gain: the NLL of `vs` minus this row's, paired over the images both were "
        "scored on, with its standard error (positive: this row is better). seconds_per_epoch: training time per epoch "
        "(rows run one after another on a shared machine).",
        *warm_start_notes(set(table["name"]), args.epochs),
        "",
        table[[c for c in columns if c in table]].to_markdown(index=False),
        "",
        "For scale: Burda et al. (arXiv:1509.00519, Table 1) report, after 3280 epochs, test NLL (K = 5000) 86.76 "
        "(one layer, VAE), 85.33 (two layers, VAE), 85.54 (one layer, IWAE k = 5), 83.89 (two layers, IWAE k = 5).",
        "",
    ]
    path.write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--rows", nargs="+", choices=list(ROWS),
                        help="default: every row trained here; with --from-runs, its rows")
    parser.add_argument("--num-samples", type=int, default=5000, help="K for the test NLL")
    parser.add_argument("--nll-datapoints", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("results"))
    parser.add_argument("--name", default="priors", help="file stem of the results (NAME.csv, NAME.md, NAME_per_image.csv)")
    parser.add_argument("--init-output-bias", action=argparse.BooleanOptionalAction, default=False,
                        help="start every row's decoder at the data's mean (TrainConfig.init_output_bias)")
    parser.add_argument("--from-runs", nargs="+", default=[], metavar="ROW=RUN_DIR",
                        help="score these rows from finished `ppl-vae train` run directories trained with the "
                             "row's settings (checked) instead of training them here; they join --rows")
    args = parser.parse_args()
    from_runs = dict(item.split("=", 1) for item in args.from_runs if "=" in item)
    if len(from_runs) != len(args.from_runs) or not set(from_runs) <= set(ROWS):
        parser.exit(2, f"error: --from-runs takes ROW=RUN_DIR with ROW one of: {', '.join(ROWS)}\n")
    trainable = [name for name in ROWS if name not in WARM_STARTED]
    args.rows = [name for name in args.rows or ([] if from_runs else trainable) if name not in from_runs] + list(from_runs)
    if untrainable := [name for name in args.rows if name not in trainable and name not in from_runs]:
        parser.exit(2, f"error: rows {', '.join(untrainable)} go on from other rows' runs (ppl-vae train --init-from); "
                       "score them with --from-runs ROW=RUN_DIR\n")
    flush_subnormals()  # as the ppl-vae command does, before any parallel work (ppl_vae.training.subnormals)
    device = resolve_device(args.device)
    loaded = {}
    for name, run_dir in from_runs.items():  # checked before any row trains
        try:
            loaded[name] = load_row(name, Path(run_dir), args, device)
        except ValueError as error:  # RunDirError and CheckpointError too: not a finished run of this row
            parser.exit(2, f"error: {error}\n")
    data = load_dataset("binarized-mnist", args.data_dir, device)
    x_nll = torch.bernoulli(data.test[: args.nll_datapoints], generator=torch.Generator(device).manual_seed(0))
    args.out.mkdir(parents=True, exist_ok=True)
    table_path, per_image_path = args.out / f"{args.name}.csv", args.out / f"{args.name}_per_image.csv"
    table = pd.read_csv(table_path) if table_path.exists() else pd.DataFrame()
    per_image = pd.read_csv(per_image_path) if per_image_path.exists() else pd.DataFrame()
    for name in args.rows:
        if len(table) and name in set(table["name"]):
            print(f"{name}: already in {table_path}, skipped", flush=True)
            continue
        trained = loaded.pop(name) if name in loaded else train_row(name, data, args, device)
        row, nll = run_row(name, trained, x_nll, args, device)
        print(row, flush=True)
        table = pd.concat([table, pd.DataFrame([row])], ignore_index=True)
        table.to_csv(table_path, index=False)
        per_image = pd.concat([per_image, pd.DataFrame({"name": name, "image": range(len(nll)),
                                                        "nll": nll.cpu().numpy()})], ignore_index=True)
        per_image.to_csv(per_image_path, index=False)
        write_report(table, per_image, args, device, args.out / f"{args.name}.md")


if __name__ == "__main__":
    main()
