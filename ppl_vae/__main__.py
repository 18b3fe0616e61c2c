"""``python -m ppl_vae`` and the ``ppl-vae`` command.

:func:`run` installs the start-up handlers for SIGINT and SIGTERM *before* torch and Pyro
are imported, so that a stop request during the imports (or anywhere outside training,
which polls its own handlers and ends with a resumable checkpoint) ends the process with one
line and exit code 130 or 143, never with a traceback; files are only ever replaced
atomically, so nothing is left half written.
"""

import os
import signal
import sys


def _stop(signum: int, frame) -> None:
    # os._exit, not SystemExit: an exception raised in the middle of an import (torch's, numpy's)
    # can be caught and turned into another error there. Every file is replaced atomically and
    # a run directory's lock dies with the process, so nothing needs unwinding.
    print(f"ppl-vae: stopped by {signal.Signals(signum).name}", file=sys.stderr, flush=True)
    os._exit(128 + signum)


def install_stop_handlers() -> None:
    """SIGINT and SIGTERM end the process with one line (training replaces them with its own)."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _stop)


def run() -> int:
    """Run the command line with clean handling of stop requests from the first instruction on."""
    install_stop_handlers()
    from ppl_vae.cli.main import main

    return main()


if __name__ == "__main__":
    sys.exit(run())
