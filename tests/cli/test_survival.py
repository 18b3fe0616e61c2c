"""Runs that survive hostile conditions, in subprocesses: concurrent writers, stop requests at
every stage, divergence under both NaN policies, a full disk at every kind of write, absurd values.

Each case asserts the promise: one line, exit code 2 (or 130/143 for a stop request), no
traceback, the files intact, and a resumed run equal to the uninterrupted one.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from ppl_vae.cli import main
from ppl_vae.training.checkpoints import TMP_SUFFIX, load_pair

FAULT_INJECTION = str(Path(__file__).parents[1] / "fault_injection.py")
TRAIN = ["train", "--dataset", "binarized-mnist-sample", "--epochs", "2", "--batch-size", "500", "--z-dim", "4",
         "--hidden-dims", "16", "--checkpoint-every-steps", "5", "--no-progress"]  # 20 steps per epoch


def ppl_vae(*args, fault: str = "", **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, FAULT_INJECTION, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=dict(os.environ, PPL_VAE_FAULT=fault), **kwargs)


def finish(process: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    _, err = process.communicate(timeout=timeout)
    return process.returncode, err


def assert_one_line(err: str) -> None:
    lines = [line for line in err.splitlines() if line.strip() and "epoch" not in line and "resuming" not in line]
    assert len(lines) == 1 and "Traceback" not in err, err


def no_leftovers(run: Path) -> bool:
    return not list(run.rglob(f"*{TMP_SUFFIX}")) and not (run / ".lock").exists()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "full"
    code, err = finish(ppl_vae(*TRAIN, "--out", str(out)))
    assert code == 0, err
    return out


def same_parameters(a: Path, b: Path) -> bool:
    (ma, ga, _), (mb, gb, _) = load_pair(a), load_pair(b)
    return all(torch.equal(p, q) for p, q in zip([*ma.parameters(), *ga.parameters()],
                                                 [*mb.parameters(), *gb.parameters()]))


@pytest.mark.slow  # waits for a stalled subprocess to write five checkpoints (about 35 s)
def test_a_second_writer_is_refused_and_a_killed_owners_lock_is_taken_over(uninterrupted, tmp_path) -> None:
    out = tmp_path / "run"
    owner = ppl_vae(*TRAIN, "--out", str(out), fault="stall:7")
    deadline = time.monotonic() + 120
    while not (out / "checkpoints" / "train-000000005.pt").exists():
        assert owner.poll() is None and time.monotonic() < deadline, owner.stderr.read() if owner.poll() else "slow"
        time.sleep(0.2)
    for command in (["train", "--resume", str(out), "--no-progress"], ["evaluate", str(out), "--no-progress"],
                    ["check", str(out)], [*TRAIN, "--out", str(out)]):
        code, err = finish(ppl_vae(*command), timeout=120)
        assert code == 2, err
        assert_one_line(err)
        assert f"in use by process {owner.pid}" in err or "already exists" in err, err
    owner.kill()  # SIGKILL: the operating system drops its lock
    owner.communicate()
    code, err = finish(ppl_vae("train", "--resume", str(out), "--no-progress"))
    assert code == 0, err
    assert same_parameters(uninterrupted, out) and no_leftovers(out)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_request_during_start_up_is_one_line(tmp_path, signum) -> None:
    out = tmp_path / "run"
    process = ppl_vae(*TRAIN, "--out", str(out))
    time.sleep(0.5)  # inside the imports of torch and Pyro
    process.send_signal(signum)
    code, err = finish(process)
    assert code == 128 + signum, err
    assert_one_line(err)
    assert f"stopped by {signal.Signals(signum).name}" in err
    assert not out.exists()


def test_a_stop_request_during_the_final_writes_resumes_to_the_same_run(uninterrupted, tmp_path) -> None:
    out = tmp_path / "run"
    code, err = finish(ppl_vae(*TRAIN, "--out", str(out), fault="term:final"))
    assert code == 143, err
    assert f"resume with: ppl-vae train --resume {out}" in err and "Traceback" not in err, err
    assert not (out / "checkpoint.pt").exists() and no_leftovers(out)
    code, err = finish(ppl_vae("train", "--resume", str(out), "--no-progress"))
    assert code == 0, err
    assert same_parameters(uninterrupted, out)
    expected = pd.read_csv(uninterrupted / "metrics.csv").drop(columns="seconds")
    pd.testing.assert_frame_equal(pd.read_csv(out / "metrics.csv").drop(columns="seconds"), expected)


@pytest.mark.parametrize("policy", ["stop", "skip"])
def test_divergence_ends_in_one_line_under_both_policies(tmp_path, policy) -> None:
    """``--lr 10``: the steps go non-finite; ``skip`` skips them and then meets a non-finite
    evaluation, which the same policy covers."""
    out = tmp_path / "run"
    code, err = finish(ppl_vae(*TRAIN, "--lr", "10", "--on-nan", policy, "--out", str(out)))
    assert code == 2, err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "Traceback" not in err, err
    assert err.count("Encountered NaN") <= 2  # Pyro's per-step warning, not once per step
    if policy == "skip":
        metrics = pd.read_csv(out / "metrics.csv")
        assert metrics["nonfinite_evaluations"].iloc[-1] >= 1 and metrics["skipped_steps"].iloc[-1] > 0
    assert not (out / "checkpoint.pt").exists() and no_leftovers(out)


def test_a_full_disk_at_every_write_is_one_line_and_leaves_the_files_intact(tmp_path, monkeypatch, capsys) -> None:
    """``fsync`` fails with ENOSPC at the n-th write of a run, for every n: config.json,
    training checkpoints, metrics.csv, the figures and checkpoint.pt."""
    real_fsync, calls = os.fsync, []

    def counting_fsync(fd):
        calls.append(fd)
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    args = [*TRAIN[:2], "binarized-mnist-sample", "--epochs", "1", "--batch-size", "500", "--z-dim", "2",
            "--hidden-dims", "8", "--checkpoint-every-steps", "10", "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "reference")]) == 0
    writes = len(calls)
    assert writes >= 6
    for n in range(1, writes + 1):
        count = iter(range(1, writes + 1))

        def full_disk(fd, n=n, count=count):
            if next(count) == n:
                raise OSError(28, "No space left on device")
            return real_fsync(fd)

        monkeypatch.setattr(os, "fsync", full_disk)
        out = tmp_path / f"full-at-{n}"
        capsys.readouterr()
        assert main([*args, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        errors = [line for line in err.splitlines() if "error:" in line]
        assert len(errors) == 1 and "No space left on device" in errors[0], err
        assert no_leftovers(out)
        for path in out.rglob("*"):  # every file left is whole
            if path.suffix == ".json":
                json.loads(path.read_text())
            elif path.suffix == ".csv":
                pd.read_csv(path)
            elif path.suffix == ".pt":
                torch.load(path, weights_only=True)


ABSURD = {
    "warmup-inf": (["--warmup-epochs", "inf"], "--warmup-epochs must be finite"),
    "lr-inf": (["--lr", "inf"], "--lr must be positive and finite"),
    "z-dim-huge": (["--z-dim", "1000000000000"], "--z-dim must be at most 65536"),
    "particles-huge": (["--num-particles", "1000000000000"], "--num-particles 1000000000000 with --batch-size"),
    "batch-huge": (["--batch-size", "1000000000000"], "GiB for one step"),
    "batch-float": (["--batch-size", "1e21"], "argument --batch-size: invalid int value"),
    "seed-huge": (["--seed", "100000000000000000000000"], "--seed must be at most"),
    "seed-float": (["--seed", "1e23"], "argument --seed: invalid int value"),
    "hidden-huge": (["--hidden-dims", "100000000000"], "--hidden-dims"),
    "keep-0": (["--keep-checkpoints", "0"], "--keep-checkpoints must be at least 1"),
    "interval-nan": (["--checkpoint-every-seconds", "nan"], "--checkpoint-every-seconds must be finite"),
}


@pytest.mark.parametrize("args, message", list(ABSURD.values()), ids=list(ABSURD))
def test_an_absurd_value_is_refused_before_anything_is_written(tmp_path, capsys, args, message) -> None:
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        sys.exit(main(["train", "--epochs", "1", "--out", str(out), "--no-progress", *args]))
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1 and message in err, err
    assert "Traceback" not in err and not out.exists()


@pytest.mark.parametrize("failing_write", [1, 2])  # evaluation.csv, then evaluation.md
def test_a_full_disk_while_appending_a_table_keeps_the_earlier_rows(tmp_path, monkeypatch, capsys, failing_write):
    run = tmp_path / "run"
    shutil.copytree(Path(__file__).parents[1] / "fixtures" / "legacy_runs" / "finished", run)
    argv = ["evaluate", str(run), "--num-samples", "5", "--num-datapoints", "5", "--no-progress"]
    assert main(argv) == 0
    before = {name: (run / name).read_bytes() for name in ("evaluation.csv", "evaluation.md")}
    real_fsync, count = os.fsync, iter(range(1, 100))

    def full_disk(fd):
        if next(count) == failing_write:
            raise OSError(28, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full_disk)
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device" in err, err
    if failing_write == 1:  # nothing replaced
        assert {name: (run / name).read_bytes() for name in before} == before
    assert len(pd.read_csv(run / "evaluation.csv")) in (1, 2) and no_leftovers(run)


def test_an_evaluation_pass_too_large_for_memory_is_refused(tmp_path, capsys) -> None:
    run = tmp_path / "run"
    shutil.copytree(Path(__file__).parents[1] / "fixtures" / "legacy_runs" / "finished", run)
    before = sorted(p.name for p in run.iterdir())
    with pytest.raises(SystemExit) as exit_info:
        sys.exit(main(["evaluate", str(run), "--batch-size", "100000", "--chunk-size", "100000", "--no-progress"]))
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1 and "--batch-size x --chunk-size" in err, err
    assert sorted(p.name for p in run.iterdir()) == before
