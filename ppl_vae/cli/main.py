"""Command line: argparse -> library calls -> a run directory.

- ``ppl-vae train`` trains a model/guide pair and writes, into one run directory:
  ``config.json``, ``metrics.csv``, ``loss_curve.png``, ``samples.png``,
  ``reconstructions.png`` and ``checkpoint.pt`` (written last: a run directory holding
  it is a finished run).
- ``ppl-vae evaluate RUN_DIR`` appends the importance-sampled test log-likelihood and
  friends to ``evaluation.csv`` / ``evaluation.md``.
- ``ppl-vae check RUN_DIR`` compares Pyro's ELBO estimators with the closed-form ELBO
  and appends the result to ``check.csv`` / ``check.md``.

Every user error is one line on stderr and exit code 2. The command keeps freed memory
in the process for reuse (:func:`ppl_vae.training.memory.retain_freed_memory`) and flushes
float subnormals to zero (:func:`ppl_vae.training.subnormals.flush_subnormals`).
"""

import argparse
import logging
import sys
import traceback
import warnings

from ppl_vae.cli.arguments import Parser, UsageError
from ppl_vae.cli.config_file import read_config_file
from ppl_vae.cli.evaluate_commands import add_check_parser, add_evaluate_parser
from ppl_vae.cli.run_directory import RunDirError
from ppl_vae.cli.run_lock import RunDirBusy
from ppl_vae.cli.train_command import add_train_parser
from ppl_vae.data.datasets import DataError
from ppl_vae.infer.svi_step import NonFiniteLossError
from ppl_vae.training.checkpoints import CheckpointError
from ppl_vae.training.distributed import DistributedError
from ppl_vae.training.memory import retain_freed_memory
from ppl_vae.training.subnormals import flush_subnormals
from ppl_vae.training.tensorboard import TensorBoardMissing


class _StderrHandler(logging.StreamHandler):
    """Writes each record to the current ``sys.stderr`` (looked up per record, as logging's own
    last-resort handler does), so that redirected or captured streams get the lines."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def show_notices() -> None:
    """Print the library's notices (the ``ppl_vae`` logger, INFO and up) on stderr, one line each,
    e.g. the compiled step's fallbacks and its promotion to inductor."""
    logger = logging.getLogger("ppl_vae")
    if not any(isinstance(handler, _StderrHandler) for handler in logger.handlers):
        logger.addHandler(_StderrHandler())
    logger.setLevel(logging.INFO)


def make_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="ppl-vae", description="Variational autoencoders written as Pyro programs.")
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    parser.train_parser = add_train_parser(subparsers)
    add_evaluate_parser(subparsers)
    add_check_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    warnings.filterwarnings("once", message="Encountered (NaN|Inf)")  # Pyro's per-step warnings, shown once
    show_notices()
    retain_freed_memory()  # no page faults from re-allocating large tensors (ppl_vae.training.memory)
    flush_subnormals()  # before any parallel work, so that every worker thread flushes (ppl_vae.training.subnormals)
    try:
        if getattr(args, "config", None) is not None:  # the file's settings become defaults; flags override them
            parser.train_parser.set_defaults(**read_config_file(args.config))
            args = parser.parse_args(argv)
        return args.func(args)
    except DistributedError as error:  # another rank died or stalled: not a usage error
        print(f"ppl-vae {args.command}: error: {error}", file=sys.stderr)
        return 1
    except (UsageError, DataError, CheckpointError, RunDirError, RunDirBusy, NonFiniteLossError, TensorBoardMissing,
            ValueError) as error:
        print(f"ppl-vae {args.command}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a full disk, a read-only directory: files already written are intact
        where = f" {error.filename}" if error.filename else ""
        print(f"ppl-vae {args.command}: error: cannot write{where}: {error.strerror or error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ppl-vae {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception:  # not a user error: keep the traceback for the report
        traceback.print_exc()
        print(f"ppl-vae {args.command}: internal error (the traceback above); please report it with the command "
              "that led to it", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
