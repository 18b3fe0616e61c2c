"""Everything a command reads from a run directory is validated: tampered or foreign files.

For each file a run directory holds and each kind of damage (a wrong type, a missing key, a
foreign state shape, an empty file, random bytes, a symbolic link), the command that reads
it fails with one line naming the file, exit code 2 and no traceback, and leaves every
file as it was; a training checkpoint that cannot be used is passed over like a truncated
one. The runs are the tiny legacy fixtures (``tests/fixtures/legacy_runs``).
"""

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import torch

from ppl_vae.cli import main
from ppl_vae.training.checkpoints import FORMAT

FIXTURES = Path(__file__).parents[1] / "fixtures" / "legacy_runs"
DAMAGE = ("wrong-type", "missing-key", "foreign-shape", "empty", "random-bytes", "symlink")


def snapshot(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): (os.readlink(p).encode() if p.is_symlink() else p.read_bytes())
            for p in sorted(run.rglob("*")) if p.is_file() or p.is_symlink()}


def damage(path: Path, kind: str, tmp_path: Path) -> None:
    """Damage one file of a run in place."""
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "random-bytes":
        path.write_bytes(os.urandom(4096))
    elif kind == "symlink":
        target = tmp_path / "elsewhere"
        target.write_bytes(path.read_bytes())
        path.unlink()
        path.symlink_to(target)
    elif path.suffix == ".json":
        config = json.loads(path.read_text())
        if kind == "wrong-type":
            config["model"]["z_dim"] = "two"
        elif kind == "missing-key":
            del config["model"]
        else:  # a foreign state shape: a model the checkpoint does not hold
            config["model"]["hidden_dims"] = [5]
        path.write_text(json.dumps(config))
    elif path.suffix == ".pt":
        state = torch.load(path, weights_only=True)
        if kind == "wrong-type":
            key = "config" if state["format"] == FORMAT else "counters"
            state[key] = 5
        elif kind == "missing-key":
            del state["config" if state["format"] == FORMAT else "optimizer"]
        else:
            first = next(iter(state["model"]))
            state["model"][first] = torch.zeros(3, 3)
        torch.save(state, path)
    else:  # a table
        path.write_text({"wrong-type": "epoch,nll\nx,y\n", "missing-key": "a,b\n1,2\n",
                         "foreign-shape": "\x00\x01\x02"}[kind])


def assert_refused(argv: list[str], run: Path, name: str, capsys) -> None:
    before = snapshot(run)
    with pytest.raises(SystemExit) as exit_info:
        sys.exit(main(argv))
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert name in err, err
    assert snapshot(run) == before  # nothing lost, nothing added


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    shutil.copytree(FIXTURES, tmp_path / "runs")
    return tmp_path / "runs"


COMMANDS = {
    "evaluate": ["evaluate", "{run}", "--num-samples", "5", "--num-datapoints", "5", "--no-progress"],
    "check": ["check", "{run}", "--num-datapoints", "5", "--num-particles", "2", "--repeats", "2", "--num-samples", "5"],
}


@pytest.mark.parametrize("kind", DAMAGE)
@pytest.mark.parametrize("command", COMMANDS)
def test_a_damaged_config_json_is_named(runs, tmp_path, capsys, command, kind) -> None:
    run = runs / "finished"
    damage(run / "config.json", kind, tmp_path)
    name = "config.json"  # foreign-shape: it describes another model than checkpoint.pt holds
    assert_refused([arg.format(run=run) for arg in COMMANDS[command]], run, name, capsys)


@pytest.mark.parametrize("kind", DAMAGE)
def test_a_damaged_config_json_is_named_on_resume(runs, tmp_path, capsys, kind) -> None:
    run = runs / "unfinished"
    damage(run / "config.json", kind, tmp_path)
    name = "config.json" if kind != "foreign-shape" else "train-000000002.pt"
    assert_refused(["train", "--resume", str(run), "--no-progress"], run, name, capsys)


@pytest.mark.parametrize("kind", DAMAGE)
@pytest.mark.parametrize("command", COMMANDS)
def test_a_damaged_checkpoint_pt_is_named(runs, tmp_path, capsys, command, kind) -> None:
    run = runs / "finished"
    damage(run / "checkpoint.pt", kind, tmp_path)
    assert_refused([arg.format(run=run) for arg in COMMANDS[command]], run, "checkpoint.pt", capsys)


@pytest.mark.parametrize("kind", DAMAGE)
def test_a_damaged_training_checkpoint_is_passed_over(runs, tmp_path, capsys, kind) -> None:
    """The newest training checkpoint damaged, an older good one present: resume uses the older one."""
    run = runs / "unfinished"
    newest = run / "checkpoints" / "train-000000002.pt"
    shutil.copy(newest, run / "checkpoints" / "train-000000001.pt")  # an older copy that loads
    damage(newest, kind, tmp_path)
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert f"passed over broken checkpoint {newest.name}" in err and "Traceback" not in err, err
    assert "resuming from" in err and "train-000000001.pt" in err
    assert (run / "checkpoint.pt").exists()


@pytest.mark.parametrize("kind", DAMAGE)
def test_a_run_whose_only_training_checkpoint_is_damaged_is_named(runs, tmp_path, capsys, kind) -> None:
    run = runs / "unfinished"
    damage(run / "checkpoints" / "train-000000002.pt", kind, tmp_path)
    assert_refused(["train", "--resume", str(run), "--no-progress"], run, "train-000000002.pt", capsys)


@pytest.mark.parametrize("kind", DAMAGE)
@pytest.mark.parametrize("command", COMMANDS)
def test_a_damaged_table_is_named_and_kept(runs, tmp_path, capsys, command, kind) -> None:
    run = runs / "finished"
    argv = [arg.format(run=run) for arg in COMMANDS[command]]
    assert main(argv) == 0  # writes the table once
    capsys.readouterr()
    damage(run / f"{command if command == 'check' else 'evaluation'}.csv", kind, tmp_path)
    assert_refused(argv, run, f"{'check' if command == 'check' else 'evaluation'}.csv", capsys)
