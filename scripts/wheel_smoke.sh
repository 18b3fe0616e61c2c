#!/usr/bin/env bash
# Wheel smoke test: build the wheel, install it into a fresh virtual environment, and train one
# epoch from outside the repository, so that the embedded data, the package data and the entry
# point are proven to ship. Usage: bash scripts/wheel_smoke.sh [WORK_DIR]
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="${1:-$(mktemp -d)}"
python3 -m pip wheel --no-deps -q -w "$work/dist" "$repo"
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q "$work"/dist/ppl_vae-*.whl
cd "$work"  # outside the repository: nothing of the checkout is on sys.path
"$work/venv/bin/python" -c "import ppl_vae, importlib.resources as r; print('ppl_vae', ppl_vae.__version__, 'from', ppl_vae.__file__); print('ships:', sorted(p.name for p in r.files('ppl_vae').joinpath('assets').iterdir()), 'py.typed' if r.files('ppl_vae').joinpath('py.typed').is_file() else 'no py.typed')"
"$work/venv/bin/ppl-vae" train --epochs 1 --out "$work/run" --no-progress
ls "$work/run"
