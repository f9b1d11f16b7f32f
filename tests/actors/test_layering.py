from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import actors

ROOT = Path(__file__).parents[2]


def test_actors_never_imports_ollm():
    modules = [m.name for m in pkgutil.walk_packages(actors.__path__, "actors.")]
    code = (
        "import sys; sys.modules['ollm'] = None\n"
        + "".join(f"import {name}\n" for name in modules)
        + "assert not any(m == 'ollm' or m.startswith('ollm.') for m in sys.modules if sys.modules[m])"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    for path in (ROOT / "actors").rglob("*.py"):
        text = path.read_text()
        assert "import ollm" not in text and "from ollm" not in text, path


def test_public_names_are_exported_once_and_sorted():
    assert actors.__all__ == tuple(sorted(actors.__all__, key=lambda n: (not n.isupper(), n)))
    for name in actors.__all__:
        assert hasattr(actors, name), name
    public = {
        n for n in vars(actors) if not n.startswith("_") and n not in {"annotations", "testing"}
    }
    assert public == set(actors.__all__)
