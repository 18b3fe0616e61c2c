"""The documentation: the Sphinx site builds with warnings as errors, the API reference lists
every module, and the pages' Python examples run as written."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def test_the_site_builds_with_warnings_as_errors(tmp_path) -> None:
    pytest.importorskip("sphinx")
    result = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(DOCS),
                             str(tmp_path / "html")], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "html" / "api.html").exists() and (tmp_path / "html" / "guide" / "training.html").exists()


def test_the_api_reference_lists_every_module() -> None:
    listed = set(re.findall(r"\.\. automodule:: (\S+)", (DOCS / "api.rst").read_text()))
    modules = {".".join(p.relative_to(ROOT).with_suffix("").parts) for p in (ROOT / "ppl_vae").glob("*/*.py")}
    modules = {m.removesuffix(".__init__") for m in modules}
    assert modules <= listed, sorted(modules - listed)


@pytest.fixture(scope="module")
def readme_namespace() -> dict:
    """What the README's examples define (``data``, the imports), run once."""
    namespace: dict = {}
    for block in python_blocks(ROOT / "README.md"):
        exec(compile(block, "README.md", "exec"), namespace)
    return namespace


@pytest.mark.parametrize("page", sorted(p.relative_to(DOCS) for p in DOCS.rglob("*.md") if python_blocks(p)),
                         ids=str)
def test_the_pages_python_examples_run(page: Path, readme_namespace: dict, capsys) -> None:
    """Each page's examples run after the README's."""
    namespace = dict(readme_namespace)
    for block in python_blocks(DOCS / page):
        exec(compile(block, str(page), "exec"), namespace)
