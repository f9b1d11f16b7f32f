"""The project's own rules, checked on every run: ruff (lint and format) and mypy --strict."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


@pytest.mark.parametrize(
    "command",
    [
        ["ruff", "check", "."],
        ["ruff", "format", "--check", "."],
        ["mypy"],
    ],
    ids=["ruff-check", "ruff-format", "mypy-strict"],
)
def test_tool_is_clean(command):
    result = subprocess.run(
        [sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_sizes_are_shown_in_binary_units_labelled_as_such():
    """ollm computes sizes in powers of 1024 (`memory.format_bytes`): no text of its own may
    label one "MB" or "GB" (the anchors' unit recogniser reads the user's text, not ours)."""
    decimal = re.compile(r"(\d|\}) ?[KMGT]B\b")
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in sorted((ROOT / "ollm").rglob("*.py"))
        if path.name != "anchors.py"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if decimal.search(line)
    ]
    assert found == [], "\n".join(found)
