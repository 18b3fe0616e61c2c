"""Build the embedded ``mnist-sample`` dataset from MNIST's standard idx files.

The sample holds the first 10,000 training digits and the first 2,000 test digits
of MNIST (LeCun, Cortes & Burges; CC BY-SA 3.0), as compressed uint8 arrays, so
that ``ppl-vae train`` works on a machine with no network.

Usage::

    python scripts/build_mnist_sample.py --raw-dir ../shared/data/MNIST/raw
"""

import argparse
import gzip
from pathlib import Path

import numpy as np

NUM_TRAIN = 10_000
NUM_TEST = 2_000
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "ppl_vae" / "assets" / "mnist_sample.npz"


def read_idx(path: Path) -> np.ndarray:
    """Read an idx file (optionally gzipped) into a uint8 array."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def find(raw_dir: Path, stem: str) -> Path:
    for candidate in (raw_dir / stem, raw_dir / f"{stem}.gz"):
        if candidate.exists():
            return candidate
    raise SystemExit(f"error: {stem} not found in {raw_dir}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw-dir", type=Path, default=Path("../shared/data/MNIST/raw"))
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    arrays = {
        "train_images": read_idx(find(args.raw_dir, "train-images-idx3-ubyte"))[:NUM_TRAIN],
        "train_labels": read_idx(find(args.raw_dir, "train-labels-idx1-ubyte"))[:NUM_TRAIN],
        "test_images": read_idx(find(args.raw_dir, "t10k-images-idx3-ubyte"))[:NUM_TEST],
        "test_labels": read_idx(find(args.raw_dir, "t10k-labels-idx1-ubyte"))[:NUM_TEST],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
