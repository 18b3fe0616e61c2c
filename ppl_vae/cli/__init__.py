"""The application: ``ppl-vae train``, ``evaluate`` and ``check``, run directories and figures."""

from ppl_vae.cli.main import main, make_parser

__all__ = ["main", "make_parser"]
