"""Model loading: device/dtype resolution, local directories, the embedded model and its cache."""

from __future__ import annotations

import json

import pytest
import torch

from objectives.masked_lm import models
from objectives.masked_lm.models import (
    EMBEDDED,
    EmbeddedModel,
    check_bf16,
    embedded_model_dir,
    load_model,
    model_identity,
    resolve_device,
    resolve_dtype,
)
from objectives.masked_lm.pypi_assets import sha256_of


def test_resolve_device():
    assert resolve_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="'cuda:0' asked for, but CUDA is not available"):
            resolve_device("cuda:0")


def test_resolve_dtype():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_dtype(None, cpu) is torch.float32
    assert resolve_dtype(None, cuda) is torch.bfloat16
    assert resolve_dtype("auto", cuda) is torch.bfloat16
    assert resolve_dtype("bf16", cpu) is torch.bfloat16
    assert resolve_dtype("Float16", cpu) is torch.float16
    assert resolve_dtype(torch.float64, cpu) is torch.float64
    with pytest.raises(ValueError, match="unknown dtype 'fp8'"):
        resolve_dtype("fp8", cpu)
    with pytest.raises(ValueError, match="floating point"):
        resolve_dtype(torch.int8, cpu)


@pytest.fixture
def tiny_dir(build_tiny, tiny_tokenizer, tmp_path):
    """A saved tiny llama whose tokenizer has no pad token."""
    model = build_tiny("llama")
    tiny_tokenizer.pad_token = None
    tiny_tokenizer.padding_side = "left"
    model.save_pretrained(tmp_path / "tiny")
    tiny_tokenizer.save_pretrained(tmp_path / "tiny")
    return tmp_path / "tiny"


def test_load_local_directory(tiny_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model, tokenizer = load_model(str(tiny_dir), device="cpu", dtype="bfloat16")
    assert not model.training
    assert next(model.parameters()).dtype is torch.bfloat16
    assert tokenizer.pad_token == tokenizer.eos_token == "</s>"
    assert tokenizer.padding_side == "right"
    ident = model_identity(str(tiny_dir), model)
    assert ident["kind"] == "local" and ident["path"] == str(tiny_dir.resolve())
    assert ident["sha256"] == {"model.safetensors": sha256_of(tiny_dir / "model.safetensors")}
    assert (ident["model_type"], ident["n_layers"], ident["n_heads"], ident["dtype"]) == ("llama", 2, 4, "bfloat16")
    json.dumps(ident)
    with pytest.raises(ValueError, match="loaded as"):
        model_identity("other", model)


def test_identity_follows_the_weights(tiny_dir, build_tiny):
    first = model_identity(str(tiny_dir), load_model(str(tiny_dir), device="cpu")[0])
    build_tiny("llama", seed=1).save_pretrained(tiny_dir)
    second = model_identity(str(tiny_dir), load_model(str(tiny_dir), device="cpu")[0])
    assert first["sha256"] != second["sha256"]
    assert {k: v for k, v in first.items() if k != "sha256"} == {k: v for k, v in second.items() if k != "sha256"}


def test_identity_of_a_model_not_loaded_here(build_tiny):
    a, b = build_tiny("gpt2"), build_tiny("gpt_neo")
    ia, ib = model_identity("x", a), model_identity("x", b)
    assert ia["kind"] == "unknown" and ia["config_hash"] != ib["config_hash"]
    assert ia["model_type"] == "gpt2" and ia["dtype"] == "float32"


def test_bad_names(tmp_path):
    with pytest.raises(ValueError, match=r"unknown embedded model 'embedded:nope'; known: \['embedded:smollm2-135m'\]"):
        load_model("embedded:nope", device="cpu")
    with pytest.raises(FileNotFoundError, match="neither a model directory"):
        load_model(str(tmp_path / "missing"), device="cpu")
    with pytest.raises(FileNotFoundError, match="neither a model directory"):
        load_model("./relative/missing", device="cpu")


def test_cache_validity_check(build_tiny, tmp_path):
    spec = EmbeddedModel(requirement="x==1", member="x.gguf", sha256="ab" * 32, cache_name="x", license="none")
    directory = tmp_path / "x"
    build_tiny("gpt2").save_pretrained(directory)
    weights = directory / "model.safetensors"
    assert not models._cache_is_valid(directory, spec)  # no record
    record = {"source_sha256": spec.sha256, "model_sha256": sha256_of(weights)}
    (directory / models._RECORD).write_text(json.dumps(record))
    assert models._cache_is_valid(directory, spec)
    other = EmbeddedModel(**{**spec.__dict__, "sha256": "cd" * 32})
    assert not models._cache_is_valid(directory, other)  # converted from another source file
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert not models._cache_is_valid(directory, spec)  # corrupted weights


@pytest.mark.embedded
def test_embedded_model_loads(embedded_model):
    model, tokenizer = embedded_model
    assert model.config.model_type == "llama" and not model.training
    assert tokenizer.pad_token is not None and tokenizer.padding_side == "right"
    ident = model_identity("embedded:smollm2-135m", model)
    directory = embedded_model_dir()
    record = json.loads((directory / models._RECORD).read_text())
    assert ident["kind"] == "embedded" and ident["sha256"] == record["model_sha256"]
    assert ident["source_sha256"] == EMBEDDED["embedded:smollm2-135m"].sha256
    assert not (directory / "config.json").read_text().count("quantization_config")
    ids = tokenizer("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=3, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert "Paris" in tokenizer.decode(out[0, ids.shape[1]:])


@pytest.mark.embedded
@pytest.mark.slow  # the first time per model identity and torch version: ~10-40 s on a busy 2-core box
def test_bf16_check_is_cached(embedded_model):
    result = check_bf16("embedded:smollm2-135m")
    assert result["tokens"] > 100
    assert 5 < result["fp32_perplexity"] < 100
    assert result["relative_difference"] == pytest.approx(
        abs(result["bf16_perplexity"] / result["fp32_perplexity"] - 1))
    assert result["use_bf16"] == (result["relative_difference"] <= result["tolerance"]
                                  and result["bf16_tokens_per_s"] > result["fp32_tokens_per_s"])
    assert check_bf16("embedded:smollm2-135m") == result  # read back from cache_dir()/bf16_check.json
    expected = torch.bfloat16 if result["use_bf16"] else torch.float32
    assert resolve_dtype("auto", torch.device("cpu")) is expected


@pytest.mark.embedded
@pytest.mark.slow
def test_first_conversion_in_a_fresh_cache(tmp_path, monkeypatch):
    """Fetch (pip's own cache makes this quick after the first time) and convert into an empty cache."""
    monkeypatch.setenv("HEADREPAIR_CACHE", str(tmp_path))
    try:
        directory = embedded_model_dir()
    except RuntimeError as exc:
        if "could not download" in str(exc):
            pytest.skip(f"no access to PyPI: {exc}")
        raise
    assert directory == tmp_path / "models" / "smollm2-135m"
    assert sorted(p.name for p in directory.parent.iterdir()) == ["smollm2-135m"]  # no temporary left over
    record = json.loads((directory / models._RECORD).read_text())
    assert record["model_sha256"] == sha256_of(directory / "model.safetensors")
    assert record["source_sha256"] == EMBEDDED["embedded:smollm2-135m"].sha256
    assert {"config.json", "tokenizer.json", "model.safetensors"} <= {p.name for p in directory.iterdir()}
    mtime = (directory / "model.safetensors").stat().st_mtime_ns
    assert embedded_model_dir() == directory  # reused, not converted again
    assert (directory / "model.safetensors").stat().st_mtime_ns == mtime
