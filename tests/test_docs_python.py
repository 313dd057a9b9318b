"""Every ```python block of docs/python.md runs as written (each in a fresh namespace)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "python.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", DOC.read_text(encoding="utf-8"), flags=re.S | re.M)


def test_the_page_has_examples():
    assert len(BLOCKS) >= 6


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_python_block_runs(index, capsys):
    code = compile(BLOCKS[index], f"docs/python.md[block {index + 1}]", "exec")
    exec(code, {"__name__": f"docs_python_{index}"})  # noqa: S102 - the documentation's own examples
    assert capsys.readouterr().out.strip(), "every example prints what it shows"
