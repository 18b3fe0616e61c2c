"""The README's Python examples run as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_examples_run(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 3
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    printed = capsys.readouterr().out.splitlines()
    elbos = [float(re.search(r"ELBO (-?[\d.]+)", line).group(1)) for line in printed]
    assert len(elbos) == 2 and elbos[1] > elbos[0]  # plain SVI training improves the ELBO
    assert len(namespace["metrics"]) == 2
