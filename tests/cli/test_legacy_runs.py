"""Run directories written before the layered layout still load, evaluate and resume.

``tests/fixtures/legacy_runs/`` holds tiny run directories (a 784-4-2 MLP on the embedded
sample) written by the flat-layout code of commit d5cc64f: a finished diagonal-guide run,
a label-conditional run with a learned prior, a quadrant-completion run and an unfinished
IAF run killed after step 2 (its training checkpoint only). ``expected.json`` holds
``ppl-vae evaluate RUN --num-samples 20 --num-datapoints 30`` on those weights with the
current evaluator (its noise is keyed on each datapoint's index, so the numbers are
deterministic; a weight loaded into the wrong place changes them), and the resumed run's
metrics as that code reported them, which equal its uninterrupted run's.
"""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from ppl_vae.cli.main import main

FIXTURES = Path(__file__).parents[1] / "fixtures" / "legacy_runs"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())


@pytest.fixture
def legacy(tmp_path: Path) -> Path:
    """A writable copy of the legacy run directories."""
    shutil.copytree(FIXTURES, tmp_path / "runs")
    return tmp_path / "runs"


@pytest.mark.parametrize("run", ["finished", "label", "quadrants"])
def test_legacy_run_evaluates_as_before(legacy: Path, run: str) -> None:
    assert main(["evaluate", str(legacy / run), "--num-samples", "20", "--num-datapoints", "30", "--no-progress"]) == 0
    row = pd.read_csv(legacy / run / "evaluation.csv").iloc[-1]
    for key, value in EXPECTED[run].items():
        torch.testing.assert_close(float(row[key]), float(value), rtol=1e-5, atol=1e-4, msg=f"{run}: {key}")


def test_legacy_unfinished_run_resumes_as_before(legacy: Path) -> None:
    assert main(["train", "--resume", str(legacy / "unfinished"), "--no-progress"]) == 0
    metrics = pd.read_csv(legacy / "unfinished" / "metrics.csv")
    expected = EXPECTED["unfinished"]["resumed_metrics"]
    for column in ("train_elbo", "test_elbo"):
        torch.testing.assert_close(metrics[column].tolist(), expected[column], rtol=1e-6, atol=1e-5)
    assert (legacy / "unfinished" / "checkpoint.pt").exists()

