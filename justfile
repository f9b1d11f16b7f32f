# ollm: recipes. Run `just` to list them. Every recipe uses the project's .venv.

py := ".venv/bin/python"

default:
    @just --list

# create .venv and install ollm with its dev tools
setup:
    python3 -m venv .venv
    {{py}} -m pip install -q -e '.[dev]'

# the whole test suite (what CI runs)
test *ARGS:
    {{py}} -m pytest {{ARGS}}

# ruff lint and format check
lint:
    {{py}} -m ruff check .
    {{py}} -m ruff format --check .

# format the code
fmt:
    {{py}} -m ruff format .
    {{py}} -m ruff check --fix .

# mypy --strict
type:
    {{py}} -m mypy

# every benchmark in scripts/ (figures go in docs/performance.md)
bench:
    {{py}} scripts/bench_bus.py
    {{py}} scripts/bench_accounting.py
    {{py}} scripts/bench_memory.py
    {{py}} scripts/bench_snapshots.py
    {{py}} scripts/bench_compression.py
    {{py}} scripts/bench_journal.py
    {{py}} scripts/bench_resume.py
    {{py}} scripts/bench_startup.py
    {{py}} scripts/bench_single_slot.py
    {{py}} scripts/bench_calibration.py
    {{py}} scripts/bench_exact_counts.py

# start the chat REPL
chat *ARGS:
    .venv/bin/ollm {{ARGS}}

# show a recorded session, or check that it replays to the same decisions
replay LOG *ARGS:
    .venv/bin/ollm replay {{LOG}} {{ARGS}}

# re-record the golden logs in tests/golden (review the diff like code)
golden:
    {{py}} scripts/record_golden.py

# regenerate docs/events.md from ollm/events.py
events:
    {{py}} scripts/gen_event_catalog.py
