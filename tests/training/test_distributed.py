"""Data-parallel training on torch.distributed: 2 Gloo processes on localhost against one process."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from ppl_vae.training.distributed import Distributed

WORKER = Path(__file__).parents[1] / "distributed_worker.py"
SMALL_RUN = ["--dataset", "binarized-mnist-sample", "--z-dim", "4", "--hidden-dims", "32", "--batch-size", "500",
             "--no-progress"]

FAULT_INJECTION = str(Path(__file__).parents[1] / "fault_injection.py")  # ppl-vae with PPL_VAE_FAULT honoured

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_env(rank: int, world_size: int, port: int, **extra) -> dict:
    return dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1", **extra)


def spawn(command: list[str], world_size: int, env_for_rank=lambda rank: {}, timeout: float = 240):
    """Start ``world_size`` ranks of ``command``; returns their CompletedProcess-like results."""
    port = free_port()
    procs = [subprocess.Popen(command, env=rank_env(rank, world_size, port, **env_for_rank(rank)),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for rank in range(world_size)]
    results = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=timeout)
            results.append((proc.returncode, out, err))
    finally:
        for proc in procs:
            proc.kill()
    return results


@pytest.mark.parametrize("size, world_size", [(10, 2), (11, 2), (7, 3), (2, 2)])
def test_shards_are_disjoint_and_cover_the_batch(size, world_size):
    rows = torch.arange(size)
    shards = [Distributed(rank, world_size, torch.device("cpu"), "gloo").shard(rows)[0] for rank in range(world_size)]
    torch.testing.assert_close(torch.cat(shards), rows, rtol=0, atol=0)
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_two_gloo_processes_match_one_process(tmp_path):
    """Each rank uses its rows of the global batch's draws (binarization and noise), so the
    two ranks together compute the single process's gradient; what remains is float32
    summation order (two half-batch sums added instead of one sum), ~1e-7 relative per
    step (measured: losses 1.2e-7 relative, parameters 3e-8 absolute after 16 Adam steps),
    so we ask for 1e-6, while one step changes the loss by more than 1e-3 relative."""
    single = tmp_path / "single.pt"
    subprocess.run([sys.executable, str(WORKER), str(single)], check=True, timeout=240,
                   env=dict(os.environ, OMP_NUM_THREADS="1"))
    results = spawn([sys.executable, str(WORKER), str(tmp_path / "group.pt")], 2)
    assert all(code == 0 for code, _, _ in results), [err[-2000:] for _, _, err in results]
    one = torch.load(single)
    rank0, rank1 = (torch.load(tmp_path / f"group-rank{rank}.pt") for rank in range(2))
    assert len(one["losses"]) == len(rank0["losses"]) == 16
    # every rank holds the very same parameters after every step
    torch.testing.assert_close(rank0["params"], rank1["params"], rtol=0, atol=0)
    torch.testing.assert_close(rank0["losses"], rank1["losses"], rtol=0, atol=0)
    # and the group follows the single process's trajectory
    torch.testing.assert_close(rank0["losses"], one["losses"], rtol=1e-6, atol=0)
    torch.testing.assert_close(rank0["params"], one["params"], rtol=0, atol=1e-6)
    torch.testing.assert_close(rank0["test_elbo"], one["test_elbo"], rtol=1e-6, atol=0)
    step_change = (one["losses"][1:] - one["losses"][:-1]).abs() / one["losses"][:-1].abs()
    assert step_change.min() > 1e-3  # the tolerance is far below what one step changes


def test_a_dead_rank_makes_the_others_fail_clearly(tmp_path):
    results = spawn([sys.executable, FAULT_INJECTION, "train", *SMALL_RUN, "--epochs", "2", "--out", str(tmp_path / "run")],
                    2, lambda rank: {"PPL_VAE_FAULT": "kill:3" if rank == 1 else "", "PPL_VAE_DIST_TIMEOUT": "30"},
                    timeout=120)
    (code0, _, err0), (code1, _, _) = results
    assert code1 == -9
    assert code0 == 1, err0[-2000:]
    assert "Traceback" not in err0
    errors = [line for line in err0.splitlines() if "error:" in line]
    assert len(errors) == 1 and "lost contact with another rank" in errors[0], err0[-2000:]


@pytest.mark.slow
def test_torchrun_trains_stops_and_resumes_like_one_process(tmp_path):
    """``torchrun -m ppl_vae train``: SIGTERM on every rank at step 25 (mid epoch 2), then
    ``--resume`` with torchrun; the run ends where one uninterrupted process ends."""
    single, group = tmp_path / "single", tmp_path / "group"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    subprocess.run([sys.executable, "-m", "ppl_vae", "train", *SMALL_RUN, "--epochs", "2", "--out", str(single)],
                   check=True, timeout=240, env=env, capture_output=True)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                "-m", "ppl_vae", "train"]
    stopped = subprocess.run([*torchrun[:-3], FAULT_INJECTION, "train", *SMALL_RUN, "--epochs", "2", "--out", str(group)],
                             timeout=240,
                             env=dict(env, PPL_VAE_FAULT="term:25"), capture_output=True, text=True)
    assert stopped.returncode != 0 and f"resume with: ppl-vae train --resume {group}" in stopped.stderr
    assert sorted(p.name for p in (group / "checkpoints").iterdir()) == ["train-000000020.pt", "train-000000025.pt"]
    resumed = subprocess.run([*torchrun, "--resume", str(group), "--no-progress"], timeout=240, env=env,
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    settings = json.loads((group / "config.json").read_text())["distributed"]
    assert settings == {"world_size": 2, "backend": "gloo", "global_batch_size": 500, "per_rank_batch_size": 250,
                        "lr": 1e-3}
    one, two = pd.read_csv(single / "metrics.csv"), pd.read_csv(group / "metrics.csv")
    for column in ("train_elbo", "test_elbo"):
        torch.testing.assert_close(torch.tensor(two[column].values), torch.tensor(one[column].values),
                                   rtol=1e-6, atol=0)
    weights = [torch.load(run / "checkpoint.pt", weights_only=True)["model"] for run in (single, group)]
    for name, value in weights[0].items():
        torch.testing.assert_close(weights[1][name], value, rtol=0, atol=1e-5)


def test_evaluate_sharded_over_two_processes_equals_one_process(tmp_path):
    """Each datapoint has its own noise generator (seeded by its index in the whole set), so
    sharding the datapoints over ranks leaves every per-datapoint estimate unchanged."""
    run = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    subprocess.run([sys.executable, "-m", "ppl_vae", "train", *SMALL_RUN, "--epochs", "1", "--out", str(run)],
                   check=True, timeout=240, env=env, capture_output=True)
    evaluate = [sys.executable, "-m", "ppl_vae", "evaluate", str(run), "--num-samples", "50", "--num-datapoints", "31",
                "--no-progress"]
    subprocess.run(evaluate, check=True, timeout=240, env=env, capture_output=True)
    results = spawn(evaluate, 2)
    assert all(code == 0 for code, _, _ in results), [err[-2000:] for _, _, err in results]
    one, two = pd.read_csv(run / "evaluation.csv").to_dict("records")
    assert two["processes"] == 2 and two["num_datapoints"] == one["num_datapoints"] == 31
    for column in ("nll", "nll_std_error", "elbo", "kl"):
        assert abs(two[column] - one[column]) <= 1e-5 * abs(one[column]), column
    assert two["active_units"] == one["active_units"]
