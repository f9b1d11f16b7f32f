"""The floors of the house, checked on every run: who may import whom inside `ollm`.

- `ollm/cli/` talks to a running session only through `ollm.live` (and the pure modules):
  it never imports the actors' modules, the provider, the storage or the probes.
- The pure modules at the top of `ollm/` import none of the floors that do I/O or run
  actors (`context`, `providers`, `storage`, `gpu`, `live`, `cli`, `app`).
- Nothing below the CLI imports it; `ollm.live` is imported only by the CLI.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
OLLM = ROOT / "ollm"

PURE = {"events", "config", "profiles", "memory", "tokens", "conversation", "compression"}
PURE |= {"fit_report", "vocabulary", "model_options", "template_costs"}
IO_FLOORS = ("ollm.context", "ollm.providers", "ollm.storage", "ollm.gpu")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> set[str]:
    """Every module `path` imports, relative imports resolved, `TYPE_CHECKING` ones too."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


MODULES = {module_name(p): imports(p) for p in sorted(OLLM.rglob("*.py"))}


def within(module: str, floor: str) -> bool:
    return module == floor or module.startswith(floor + ".")


@pytest.mark.parametrize("module", sorted(m for m in MODULES if within(m, "ollm.cli")))
def test_the_cli_reaches_a_session_only_through_ollm_live(module):
    reached = sorted(i for i in MODULES[module] if any(within(i, f) for f in IO_FLOORS))
    assert reached == [], f"{module} imports {reached}: go through ollm.live"


@pytest.mark.parametrize("module", sorted(f"ollm.{m}" for m in PURE))
def test_the_pure_modules_do_no_io_and_run_no_actors(module):
    floors = (*IO_FLOORS, "ollm.live", "ollm.cli", "ollm.core", "httpx", "anyio")
    reached = sorted(i for i in MODULES[module] if any(within(i, f) for f in floors))
    assert reached == [], f"{module} imports {reached}"


def test_nothing_below_the_cli_imports_it_and_only_the_cli_opens_sessions():
    for module, imported in MODULES.items():
        if within(module, "ollm.cli") or module == "ollm.__main__":
            continue
        assert not any(within(i, "ollm.cli") for i in imported), module
        if not within(module, "ollm.live"):
            assert not any(within(i, "ollm.live") for i in imported), module


def test_the_check_sees_what_it_checks():
    # A mutation guard: the parser resolves relative imports the way Python does.
    assert "ollm.live" in MODULES["ollm.cli.chat"]
    assert "ollm.context.session" in MODULES["ollm.live._preview"]
    assert "ollm.conversation" in MODULES["ollm.context.session"]
