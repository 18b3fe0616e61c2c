"""One process at a time in a run directory: an advisory lock held while a command writes there.

``ppl-vae train`` (new or resumed), ``evaluate`` and ``check`` hold ``RUN_DIR/.lock``
(``fcntl.flock``, exclusive, never waiting) while they run; a second command on the same
directory is refused with one line naming the owner's PID. The operating system drops a
lock when its process dies, so the lock of a killed process is taken over at once; the
file holds the owner's PID and command for the message only, and is removed on release.
"""

import fcntl
import os
import sys
from contextlib import ExitStack
from pathlib import Path

from ppl_vae.cli.run_directory import RunDirError
from ppl_vae.training.checkpoints import remove_stale_temporaries

LOCK_NAME = ".lock"


class RunDirBusy(RuntimeError):
    """Another process holds the run directory."""


class RunLock:
    """Hold ``run_dir``'s lock within a ``with`` block, and clear what killed writers left there.

    :param run_dir: an existing run directory.
    :param command: what the holder does, for the message another process gets.
    :raises RunDirBusy: naming the owner, if another process holds the lock.
    """

    def __init__(self, run_dir: str | Path, command: str) -> None:
        self.path, self.command, self.fd = Path(run_dir) / LOCK_NAME, command, None

    def __enter__(self) -> "RunLock":
        if not self.path.parent.is_dir():
            raise RunDirError(f"run directory {self.path.parent} not found")
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = os.read(fd, 200).decode(errors="replace").strip() or "another process"
                os.close(fd)
                raise RunDirBusy(f"{self.path.parent} is in use by {owner}; wait for it to finish or stop it") from None
            try:  # the file may have been removed by its last owner between open and flock: lock the new one
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"process {os.getpid()} (ppl-vae {self.command})".encode())
        self.fd = fd
        for folder in (self.path.parent, self.path.parent / "checkpoints"):
            for stale in remove_stale_temporaries(folder):
                print(f"ppl-vae {self.command}: removed {stale.name}, left by an interrupted write", file=sys.stderr)
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            self.path.unlink(missing_ok=True)  # before the release: a waiter then locks a fresh file
            os.close(self.fd)
            self.fd = None


def hold(stack: ExitStack, run_dir: str | Path, command: str) -> None:
    """Take ``run_dir``'s lock until ``stack`` closes.

    For :meth:`~ppl_vae.training.distributed.Distributed.on_main`, so that rank 0 holds it.
    """
    stack.enter_context(RunLock(run_dir, command))
