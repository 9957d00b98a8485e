"""Zero-shot multiple-choice accuracy: a utility check of a (masked) model beyond perplexity.

Data
    :func:`load_choice_file` reads a JSONL file of :class:`ChoiceItem` (a context, two or more
    choices, the index of the right one); :func:`cut_choice_splits` deals the items to the three
    splits of :data:`~objectives.masked_lm.data.SPLITS`.

Forward passes (the model is whatever ``HeadMasker`` currently masks)
    :func:`encode_choices` makes one sequence per (item, choice), ``prefix + context + " " +
    choice``, with the choice's tokens marked as the scored ones (:func:`join_choice` says exactly
    how the text is joined); :func:`choice_scores` sums each choice's token log-likelihoods.  The
    batches are fixed by the data (:func:`~objectives.masked_lm.metrics.encode_sentences`), so the
    same mask gives bit-identical scores.

Aggregates (numpy only, hand-checkable)
    :func:`accuracy_figures`: accuracy (the choice of highest score), its standard error over
    items, and against the unpruned model's scores the paired change and its standard error.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from objectives.masked_lm.data import SPLITS
from objectives.masked_lm.metrics import EncodedSentences, encode_sentences, sentence_logprobs

__all__ = [
    "NORMALIZATIONS", "ChoiceItem", "load_choice_file", "choice_items_digest", "cut_choice_splits", "join_choice",
    "EncodedChoices", "encode_choices", "ChoiceScores", "choice_scores", "accuracy_figures",
]

#: How a choice's token log-likelihoods become its score: ``"token"`` mean per token, ``"sum"`` summed.
NORMALIZATIONS = ("token", "sum")
MIN_ITEMS = 2 * len(SPLITS)


# ------------------------------------------------------------------------------------ data
@dataclass(frozen=True)
class ChoiceItem:
    """One question: ``context`` is followed by one of ``choices``; ``choices[label]`` is right.
    ``item`` names it (an id from the file, else ``"{file name}:{line}"``)."""

    context: str
    choices: tuple[str, ...]
    label: int
    item: str


def _label_index(raw: object, choices: Sequence[str], where: str, key: str) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise ValueError(f"{where}: {key!r} must be a 0-based choice index or one of the choice strings, "
                         f"got {raw!r}")
    if isinstance(raw, str):
        hits = [j for j, c in enumerate(choices) if c == raw]
        if not hits:
            raise ValueError(f"{where}: {key!r} {raw!r} is not one of the {len(choices)} choices "
                             "(give a 0-based index or a choice string)")
        return hits[0]
    if not 0 <= raw < len(choices):
        raise ValueError(f"{where}: {key!r} {raw} is out of range for {len(choices)} choices (0-based)")
    return raw


def load_choice_file(path: str | Path, *, context: str = "context", choices: str = "choices", label: str = "label",
                     item: str | None = "id") -> list[ChoiceItem]:
    """Read a JSONL file (UTF-8, one JSON object per line; blank lines are skipped).

    Each object has a non-empty string under ``context``, a list of at least two distinct non-empty
    strings under ``choices``, and under ``label`` either the 0-based index of the right choice or
    the right choice's string.  ``item``: the key of an item id (used when the object has it; ids
    must be unique), else the item is named ``"{file name}:{line}"``.  The file must hold at least
    six items (two per split).  Raises ``FileNotFoundError`` or a one-line ``ValueError`` naming the
    file, the line and what was expected.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"multiple-choice file {str(path)!r} does not exist (expected JSONL with keys "
                                f"{context!r}, {choices!r}, {label!r})")
    out: list[ChoiceItem] = []
    seen: dict[str, int] = {}
    with path.open(encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            where = f"{path}:{line_no}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
            if not isinstance(obj, dict):
                raise ValueError(f"{where}: expected a JSON object, got {type(obj).__name__}")
            missing = [k for k in (context, choices, label) if k not in obj]
            if missing:
                raise ValueError(f"{where}: missing key(s) {missing}; keys found: {sorted(obj)}")
            ctx, chs = obj[context], obj[choices]
            if not isinstance(ctx, str) or not ctx.strip():
                raise ValueError(f"{where}: {context!r} must be a non-empty string, got {ctx!r}")
            if not isinstance(chs, list) or not all(isinstance(c, str) for c in chs):
                raise ValueError(f"{where}: {choices!r} must be a list of strings, got {chs!r}")
            if len(chs) < 2:
                raise ValueError(f"{where}: {choices!r} has {len(chs)} choice(s); need >= 2")
            empty = [j for j, c in enumerate(chs) if not c.strip()]
            if empty:
                raise ValueError(f"{where}: {choices!r} has empty choice(s) at index {empty}")
            if len(set(chs)) < len(chs):
                raise ValueError(f"{where}: {choices!r} has duplicate choices {chs!r}")
            lab = _label_index(obj[label], chs, where, label)
            name = str(obj[item]) if item is not None and item in obj else f"{path.name}:{line_no}"
            if name in seen:
                raise ValueError(f"{where}: item id {name!r} already used on line {seen[name]}")
            seen[name] = line_no
            out.append(ChoiceItem(ctx, tuple(chs), lab, name))
    if len(out) < MIN_ITEMS:
        raise ValueError(f"{path}: {len(out)} items; need >= {MIN_ITEMS} (two per split of {SPLITS})")
    return out


def choice_items_digest(items: Sequence[ChoiceItem]) -> str:
    """A short hash of the items (text, choices, labels, names), for a problem's fingerprint."""
    blob = json.dumps([asdict(it) for it in items], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cut_choice_splits(items: Sequence[ChoiceItem], seed: int = 0) -> dict[str, list[ChoiceItem]]:
    """Deal ``items`` to the splits of :data:`SPLITS` (sizes differ by at most one; items sharing an
    ``item`` name stay together).  Deterministic in ``(items, seed)``; each split keeps the items'
    order.  Needs at least three distinct items."""
    names = list(dict.fromkeys(it.item for it in items))
    if len(names) < len(SPLITS):
        raise ValueError(f"{len(names)} distinct items; need >= {len(SPLITS)} to cut {SPLITS}")
    rng = np.random.default_rng([seed, 17])
    split_of = {}
    for s, part in enumerate(np.array_split(rng.permutation(len(names)), len(SPLITS))):
        for i in part:
            split_of[names[i]] = s
    return {name: [it for it in items if split_of[it.item] == s] for s, name in enumerate(SPLITS)}


# --------------------------------------------------------------------------- forward passes
def join_choice(context: str, choice: str) -> tuple[str, int]:
    """``(text, start)``: the scored sequence of ``choice`` after ``context`` and the character
    offset where the choice's part begins.

    The two are joined by one space, unless the choice already starts with whitespace.  Whitespace
    at the end of the context belongs to the choice's part (as in lm-evaluation-harness), so
    ``start`` is where the whitespace before the choice begins: byte-level BPE and SentencePiece
    attach that space to the choice's first token, which is thus scored whole.
    """
    stripped = context.rstrip()
    sep = context[len(stripped):]
    if not sep and not choice[:1].isspace():
        sep = " "
    return stripped + sep + choice, len(stripped)


@dataclass(frozen=True)
class EncodedChoices:
    """Fixed batches of every (item, choice) sequence, the choice's tokens marked as scored.

    ``sentences``: the batches (:class:`~objectives.masked_lm.metrics.EncodedSentences`; row ``k``
    is sequence ``k`` in item-major order); ``item_of``/``choice_of``: ``int[n_rows]``, the item and
    choice of each sequence; ``labels``: ``int[n_items]``; ``n_tokens``: ``int[n_items,
    max_choices]`` scored tokens per choice (0 where an item has fewer choices); ``texts``: the
    joined text of each sequence (:func:`join_choice`).
    """

    sentences: EncodedSentences
    item_of: np.ndarray
    choice_of: np.ndarray
    labels: np.ndarray
    n_tokens: np.ndarray
    texts: tuple[str, ...]

    @property
    def n_items(self) -> int:
        return int(self.labels.size)

    @property
    def max_choices(self) -> int:
        return int(self.n_tokens.shape[1])


def encode_choices(tokenizer, items: Sequence[ChoiceItem], *, batch_size: int = 32) -> EncodedChoices:
    """Tokenize every (item, choice) of ``items`` into fixed batches (prefix token first, see
    :func:`~objectives.masked_lm.metrics.prefix_token_id`); a token is the choice's when its first
    character is at or past the ``start`` of :func:`join_choice`.  Raises ``ValueError`` when a
    choice gets no token of its own (the tokenizer merged it into the context)."""
    if not items:
        raise ValueError("no multiple-choice items to encode")
    texts, starts, item_of, choice_of = [], [], [], []
    for i, it in enumerate(items):
        for j, choice in enumerate(it.choices):
            text, start = join_choice(it.context, choice)
            texts.append(text)
            starts.append(start)
            item_of.append(i)
            choice_of.append(j)
    sentences = encode_sentences(tokenizer, texts, starts, batch_size=batch_size)
    item_arr, choice_arr = np.array(item_of), np.array(choice_of)
    n_tokens = np.zeros((len(items), max(len(it.choices) for it in items)), dtype=int)
    row = 0
    for _ids, att, aft in sentences.batches:
        rows = sentences.order[row:row + att.shape[0]]
        n_tokens[item_arr[rows], choice_arr[rows]] = (aft[:, 1:] & att[:, 1:].bool()).sum(1).numpy()
        row += att.shape[0]
    for k in range(len(texts)):
        if n_tokens[item_arr[k], choice_arr[k]] == 0:
            raise ValueError(f"item {items[item_arr[k]].item!r}, choice {choice_arr[k]}: no token starts at or after "
                             f"character {starts[k]} of {texts[k]!r}; the tokenizer merged the choice into the context")
    labels = np.array([it.label for it in items], dtype=int)
    return EncodedChoices(sentences, item_arr, choice_arr, labels, n_tokens, tuple(texts))


@dataclass(frozen=True)
class ChoiceScores:
    """Per item and choice (``float[n_items, max_choices]``, ``-inf`` where an item has fewer
    choices): ``total`` summed log-likelihood of the choice's tokens (nats), ``per_token`` the same
    divided by ``n_tokens`` (``int``)."""

    total: np.ndarray
    per_token: np.ndarray
    n_tokens: np.ndarray

    def normalized(self, normalize: str) -> np.ndarray:
        """``per_token`` for ``"token"``, ``total`` for ``"sum"`` (:data:`NORMALIZATIONS`)."""
        if normalize == "token":
            return self.per_token
        if normalize == "sum":
            return self.total
        raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")


def choice_scores(model, encoded: EncodedChoices) -> ChoiceScores:
    """Run ``model`` (no gradients) over the fixed batches of ``encoded``."""
    lp = sentence_logprobs(model, encoded.sentences)
    total = np.full(encoded.n_tokens.shape, -np.inf)
    total[encoded.item_of, encoded.choice_of] = lp.sum_after
    per_token = np.full(encoded.n_tokens.shape, -np.inf)
    per_token[encoded.item_of, encoded.choice_of] = lp.sum_after / lp.n_after
    return ChoiceScores(total, per_token, encoded.n_tokens.copy())


# ------------------------------------------------------------------------------- aggregates
def _scores_array(scores: ChoiceScores | np.ndarray, normalize: str, name: str) -> np.ndarray:
    arr = scores.normalized(normalize) if isinstance(scores, ChoiceScores) else np.asarray(scores, dtype=float)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] < 2:
        raise ValueError(f"{name} must be float[n_items >= 1, max_choices >= 2], got shape {list(arr.shape)}")
    if np.isnan(arr).any():
        raise ValueError(f"{name} contain NaN (at items {np.flatnonzero(np.isnan(arr).any(1))[:5].tolist()})")
    return arr


def _mean_se(x: np.ndarray) -> float:
    """Standard error of the mean over items: sample SD (``ddof=1``) / sqrt(n); 0 for one item."""
    return float(x.std(ddof=1) / np.sqrt(x.size)) if x.size > 1 else 0.0


def accuracy_figures(scores: ChoiceScores | np.ndarray, labels: np.ndarray,
                     base_scores: ChoiceScores | np.ndarray | None = None, *, normalize: str = "token") -> dict:
    """Zero-shot accuracy: an item is right when its highest-scoring choice is ``labels[i]``
    (ties go to the first choice).

    ``scores``/``base_scores``: :class:`ChoiceScores` (scored by ``normalize``, :data:`NORMALIZATIONS`)
    or plain ``float[n_items, max_choices]`` arrays taken as they are; ``base_scores`` are the
    unpruned model's.  Returns ``accuracy``, ``accuracy_se`` (sample SD of per-item correctness /
    sqrt(n), as lm-evaluation-harness), ``n_items``, and with a baseline ``base_accuracy``,
    ``accuracy_change`` (mask minus baseline) and ``accuracy_change_se`` (paired: the SE of the mean
    of per-item differences of correctness, so items both get right or wrong add no noise).
    """
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")
    arr = _scores_array(scores, normalize, "scores")
    labels = np.asarray(labels)
    if labels.shape != (arr.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be int[{arr.shape[0]}], got {labels.dtype}{list(labels.shape)}")
    in_range = (labels >= 0) & (labels < arr.shape[1])
    if not in_range.all() or not np.isfinite(arr[np.arange(arr.shape[0]), labels]).all():
        raise ValueError(f"labels must index a scored choice (0 <= label < {arr.shape[1]}, finite score)")
    right = (arr.argmax(1) == labels).astype(float)
    out = {"accuracy": float(right.mean()), "accuracy_se": _mean_se(right), "n_items": int(right.size)}
    if base_scores is not None:
        base = _scores_array(base_scores, normalize, "base_scores")
        if base.shape != arr.shape:
            raise ValueError(f"base_scores shape {list(base.shape)} differs from scores shape {list(arr.shape)}")
        base_right = (base.argmax(1) == labels).astype(float)
        out.update(base_accuracy=float(base_right.mean()), accuracy_change=float((right - base_right).mean()),
                   accuracy_change_se=_mean_se(right - base_right))
    return out
