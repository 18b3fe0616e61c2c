"""``scripts/gpu_check.sh`` runs end to end: on the CPU at small sizes (``--device cpu``), so that
the day a GPU is lent the prepared command is known to work."""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


def test_bad_options_are_one_line_with_exit_code_2(tmp_path):
    for args, message in ((["--device", "tpu"], "--device must be cuda or cpu, got 'tpu'"),
                          (["--frobnicate"], "unknown option --frobnicate; the options are")):
        result = run(*args, "--out", str(tmp_path / "out"))
        assert result.returncode == 2 and result.stderr.count("\n") == 1 and message in result.stderr
        assert not (tmp_path / "out").exists()  # nothing written


@pytest.mark.slow
def test_gpu_check_runs_on_the_cpu(tmp_path, shared_data):
    out = tmp_path / "gpu"
    result = run("--device", "cpu", "--out", str(out), "--data-dir", str(shared_data))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    train = pd.read_csv(out / "bench_train.csv")
    assert {"plain-torch", "plain-compiled", "ppl_vae-off", "ppl_vae-fx", "ppl_vae-inductor", "ppl_vae-auto"} <= set(
        train["method"])
    assert train.loc[train["default"], "method"].tolist() == ["ppl_vae-auto"]
    assert (train["images_per_s"] > 0).all() and train["ratio_to_best_plain"].notna().all()
    evaluation = pd.read_csv(out / "bench_evaluate.csv")
    assert evaluation["test_nll"].notna().all() and (evaluation["ratio_to_bare"] > 0).all()
    summary = (out / "kill_resume" / "summary.txt").read_text()
    assert "killed after checkpoint train-" in summary  # killed mid-run, not after it finished
    assert "largest difference: 0 nats (bitwise equal)" in summary  # on the CPU a resumed run is the same run
    assert not list(out.rglob("*.pt"))  # the weights are not kept
    assert "done" in (out / "log.txt").read_text()
