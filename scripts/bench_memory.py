"""Peak resident memory of ``ppl-vae check`` and ``ppl-vae evaluate``, each in a fresh process.

Trains the default 784-400-20 pair on the embedded sample for one epoch, then runs the two
commands on it as subprocesses and reads each one's peak resident set size with
``resource.getrusage(RUSAGE_CHILDREN)`` from a fresh wrapper process. ``--code-root`` runs
another checkout's code (its ``ppl_vae`` on ``PYTHONPATH``), for a before/after comparison.
Writes ``<out>/memory.csv`` and ``<out>/memory.md`` (appending rows).

Usage::

    python scripts/bench_memory.py --num-datapoints 100 500
"""

import argparse
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

MEASURE = ("import resource, subprocess, sys; code = subprocess.run(sys.argv[1:], capture_output=True).returncode; "
           "print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def peak_kib(command: list[str], env: dict) -> tuple[int, int]:
    """``(exit code, peak resident KiB)`` of ``command`` run in a fresh process."""
    # from a neutral directory: ``python -m`` puts the working directory first on sys.path
    out = subprocess.run([sys.executable, "-c", MEASURE, *command], capture_output=True, text=True, env=env, check=True,
                         cwd=tempfile.gettempdir())
    code, kib = out.stdout.split()
    return int(code), int(kib)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-datapoints", type=int, nargs="+", default=(100, 500))
    parser.add_argument("--num-samples", type=int, default=5000, help="K of evaluate")
    parser.add_argument("--code-root", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--label", default="this checkout")
    parser.add_argument("--out", type=Path, default=Path("results"))
    args = parser.parse_args()
    env = dict(os.environ, PYTHONPATH=str(args.code_root.resolve()))
    ppl_vae = [sys.executable, "-m", "ppl_vae"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        subprocess.run([*ppl_vae, "train", "--epochs", "1", "--out", str(run), "--no-progress"], env=env, check=True,
                       capture_output=True, cwd=tmp)
        for n in args.num_datapoints:
            for command, extra in (("check", []), ("evaluate", ["--num-samples", str(args.num_samples),
                                                                "--no-progress"])):
                code, kib = peak_kib([*ppl_vae, command, str(run), "--num-datapoints", str(n), *extra], env)
                rows.append({"code": args.label, "command": command, "num_datapoints": n,
                             "num_samples": args.num_samples if command == "evaluate" else 1000,
                             "exit_code": code, "peak_rss_gib": round(kib / 2**20, 2)})
                print(rows[-1], flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    csv = args.out / "memory.csv"
    table = pd.concat([pd.read_csv(csv), pd.DataFrame(rows)]) if csv.exists() else pd.DataFrame(rows)
    table.to_csv(csv, index=False)
    (args.out / "memory.md").write_text(
        f"# Peak resident memory of check and evaluate ({platform.machine()}, {os.cpu_count()} CPUs)\n\n"
        "`python scripts/bench_memory.py --num-datapoints ... [--code-root OTHER_CHECKOUT --label ...]`: the default "
        "784-400-20 pair trained 1 epoch on the embedded sample; check at its defaults (100 particles x 20 repeats, "
        "1000 reference samples), evaluate at K = num_samples.\n\n" + table.to_markdown(index=False) + "\n")


if __name__ == "__main__":
    main()
