"""Sphinx configuration: ``python -m sphinx -W -b html docs docs/_build`` (warnings are errors)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ppl_vae  # noqa: E402

project = "ppl_vae"
release = version = ppl_vae.__version__
extensions = ["sphinx.ext.autodoc", "sphinx.ext.mathjax", "sphinx.ext.viewcode", "myst_parser"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
html_theme = "furo"
html_title = "ppl_vae"
autodoc_member_order = "bysource"
autodoc_typehints = "description"
myst_heading_anchors = 3
# a reference to a ppl_vae object that does not exist fails the build; other libraries' are not resolved here
nitpicky = True
nitpick_ignore_regex = [(r"py:.*", r"(string|torch|torchvision|pyro|numpy|np|pd|pandas|nn|dist|typing|collections|pathlib|"
                         r"argparse|contextlib|dataclasses|matplotlib|Path|Tensor|Callable|Iterator|Any|Sequence|NamedTuple|ELBO|"
                         r"Trace|Distribution|TorchDistribution|Module|Generator|optional|float|int|str|bool|dict|list|"
                         r"tuple|None|type|object|Exception|ValueError|RuntimeError|ImportError)(\..*)?")]
