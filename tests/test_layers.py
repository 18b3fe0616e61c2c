"""The package's layers import downward only, and each module is one idea of modest size."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "ppl_vae"
# lowest first; a module may import its own layer and the layers before it
LAYERS = ("distributions", "nn", "guides", "priors", "models", "infer", "data", "training", "cli")
MAX_LINES = 320


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "ppl_vae" and parts[1] in LAYERS else None


def imported_modules(path: Path) -> set[str]:
    """The ``ppl_vae`` modules a file imports (at any depth of the file)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {name for name in names if name.startswith("ppl_vae")}


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.parent != PACKAGE)


def test_every_module_lives_in_a_layer() -> None:
    flat = sorted(p.name for p in PACKAGE.glob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    assert flat == []
    assert {p.relative_to(PACKAGE).parts[0] for p in MODULES} <= set(LAYERS)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path: Path) -> None:
    own = LAYERS.index(path.relative_to(PACKAGE).parts[0])
    upward = [name for name in imported_modules(path)
              if name == "ppl_vae" or (layer_of(name) is not None and LAYERS.index(layer_of(name)) > own)]
    assert upward == [], f"{path.relative_to(PACKAGE)} imports a higher layer"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_stay_small(path: Path) -> None:
    assert len(path.read_text().splitlines()) <= MAX_LINES
