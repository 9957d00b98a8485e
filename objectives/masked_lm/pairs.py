"""Sentence pairs for likelihood bias metrics: a gender swapper, a built-in swap set, pair files, splits.

A :class:`SentencePair` is two sentences that differ in who they are about (or in how
stereotyped they are); a bias metric compares the model's likelihood of the two sides.

Gender swapping
    :func:`swap_gender` rewrites a text with every word of the table below replaced by its
    counterpart, in both directions in one pass (``"John thanked his aunt."`` ->
    ``"Mary thanked her uncle."``).  Words match whole (``"shepherd"``, ``"these"``,
    ``"history"``, ``"menu"`` stay), case-insensitively, and keep their capitalisation
    (``He`` -> ``She``, ``HIS`` -> ``HER``); punctuation and spacing are kept.  First names
    swap only when capitalised (``"Jack"`` is a name, ``"jack"`` a tool).

    ==============  ===========================================================================
    kind            male/female pairs
    ==============  ===========================================================================
    pronouns        he/she, him/her, his/her, his/hers, himself/herself
    people          man/woman, men/women, boy/girl, boys/girls, male/female, males/females,
                    guy/gal, guys/gals, lad/lass, schoolboy/schoolgirl, schoolboys/schoolgirls
    family          father/mother, fathers/mothers, dad/mom, dads/moms, daddy/mommy,
                    son/daughter, sons/daughters, brother/sister, brothers/sisters,
                    husband/wife, husbands/wives, uncle/aunt, uncles/aunts, nephew/niece,
                    nephews/nieces, grandfather/grandmother, grandfathers/grandmothers,
                    grandpa/grandma, grandson/granddaughter, grandsons/granddaughters,
                    stepfather/stepmother, stepson/stepdaughter, boyfriend/girlfriend,
                    boyfriends/girlfriends, widower/widow, widowers/widows
    titles          mr/ms, sir/madam, king/queen, kings/queens, prince/princess,
                    princes/princesses, duke/duchess, emperor/empress, gentleman/lady,
                    gentlemen/ladies
    occupations     actor/actress, actors/actresses, waiter/waitress, waiters/waitresses,
                    steward/stewardess, stewards/stewardesses, headmaster/headmistress,
                    policeman/policewoman, policemen/policewomen, businessman/businesswoman, businessmen/businesswomen,
                    chairman/chairwoman, spokesman/spokeswoman, salesman/saleswoman,
                    salesmen/saleswomen, sportsman/sportswoman, monk/nun, monks/nuns
    first names     John/Mary, James/Emily, David/Sarah, Michael/Jessica, Robert/Rachel,
                    William/Abigail, Daniel/Hannah, Thomas/Sophie, Peter/Alice, Paul/Emma,
                    Steven/Lauren, Andrew/Amanda, Kevin/Karen, Brian/Megan, Jason/Julia,
                    Eric/Lisa, Ryan/Kate, Adam/Ella, Jack/Lucy, George/Nicole, Henry/Helen,
                    Samuel/Claire, Matthew/Melissa, Charles/Natalie, Joseph/Olivia, Tom/Amy
    one way         mrs -> mr  (``Mr`` swaps back to ``Ms``)
    ==============  ===========================================================================

    The ambiguous pronouns follow one rule, by the NEXT word: ``her``/``his`` is a possessive
    determiner (``her`` -> ``his``, ``his`` -> ``her``) unless it is followed by punctuation, the end of
    the text, or a word of :data:`PRONOUN_CUES` (prepositions, conjunctions, adverbs,
    determiners, pronouns, auxiliary verbs: words that cannot open the noun phrase a
    possessive governs); then it is an object or independent pronoun (``her`` -> ``him``,
    ``his`` -> ``hers``).  So ``"her book"`` -> ``"his book"``, ``"saw her."`` -> ``"saw him."``,
    ``"told her the truth"`` -> ``"told him the truth"``, ``"it is his."`` -> ``"it is hers."``.
    The rule is wrong on an object followed by a noun phrase or an adjective (``"gave her
    flowers"``, ``"made her happy"``) and on a possessive before a cue word (``"her home"``,
    ``"her back"``): the built-in sentences avoid those.

Built-in swap set
    :func:`builtin_swap_pairs`: 64 families of everyday sentences written for this product,
    each a base sentence (half written female, half male) plus two close variants; the other
    side is :func:`swap_gender` of the written one.  ``a`` is always the female version.  A
    family whose content carries a common gender stereotype is labelled with the side that
    expresses it (``"a"``: nursing, crying, cooking, ...; ``"b"``: engineering, fighting,
    leadership, ...), 20 families each way; 24 families are neutral (``stereotyped=None``).

Pair files
    :func:`load_pair_file` reads a user's pairs (JSON lines or CSV/TSV) into pairs with
    ``a`` = the more stereotyped and ``b`` = the less stereotyped sentence.

Splits
    :func:`cut_pair_splits` deals whole families to ``search``, ``validation`` and ``heldout``;
    :func:`describe_pairs` gives the content hash and counts for fingerprints.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from objectives.masked_lm.data import SPLITS
from objectives.masked_lm.gender_swap import GENDER_WORD_PAIRS, NAME_PAIRS, PRONOUN_CUES, swap_gender
from objectives.masked_lm.swap_sentences import _SWAP_FAMILIES

__all__ = [
    "SentencePair", "swap_gender", "builtin_swap_pairs", "load_pair_file", "cut_pair_splits", "describe_pairs",
    "GENDER_WORD_PAIRS", "NAME_PAIRS", "PRONOUN_CUES", "DIRECTION_VALUES", "MIN_PAIRS",
]


@dataclass(frozen=True)
class SentencePair:
    """Two sentences compared by a likelihood bias metric.

    ``a``/``b``: for the swap set the female-side and male-side versions; for a pair file the
    more and the less stereotyped sentence.  ``item``: the pair's id.  ``family``: the unit kept
    on one side of every split cut and resampled by the bootstrap.  ``group``: e.g.
    ``"gender"`` or the file's group column (``""`` when none).  ``stereotyped``: which side
    (``"a"`` or ``"b"``) expresses the stereotype, ``None`` when unlabelled or neutral.
    """

    a: str
    b: str
    item: str
    family: str
    group: str = ""
    stereotyped: str | None = None

    def __post_init__(self) -> None:
        if self.stereotyped not in (None, "a", "b"):
            raise ValueError(f"stereotyped must be 'a', 'b' or None, got {self.stereotyped!r}")


# --------------------------------------------------------------------------- built-in swap set
_SIDE = {"f": "a", "m": "b", None: None}


@functools.lru_cache(maxsize=1)
def _builtin_swap_pairs() -> tuple[SentencePair, ...]:
    out = []
    for family, written, stereo, sentences in _SWAP_FAMILIES:
        for k, text in enumerate(sentences):
            other = swap_gender(text)
            a, b = (text, other) if written == "f" else (other, text)
            out.append(SentencePair(a=a, b=b, item=f"{family}.{k}", family=family, group="gender",
                                    stereotyped=_SIDE[stereo]))
    return tuple(out)


def builtin_swap_pairs() -> list[SentencePair]:
    """The built-in gender swap set: ``a`` the female, ``b`` the male version of each sentence.

    Item ids are ``"{family}.{k}"`` (``k = 0`` the base sentence), ``group="gender"``."""
    return list(_builtin_swap_pairs())


# --------------------------------------------------------------------------------- pair files
MIN_PAIRS = 6  # two per split
# Direction values (case-insensitive) -> the stereotyped side.  "stereo": the `more` sentence
# expresses the stereotype; "antistereo": the `more` sentence violates it, so `less` does.
DIRECTION_VALUES: dict[str, str | None] = {
    "stereo": "a", "stereotype": "a", "stereotypical": "a", "more": "a", "a": "a",
    "antistereo": "b", "anti-stereo": "b", "anti_stereo": "b", "antistereotype": "b", "anti-stereotype": "b",
    "less": "b", "b": "b",
    "": None, "none": None, "neutral": None,
}
_DELIMITERS = {".csv": ",", ".tsv": "\t"}
_JSON_EXTS = (".jsonl", ".json")


def _json_rows(path: Path) -> list[tuple[int, dict]]:
    rows = []
    with path.open(encoding="utf-8-sig") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path} line {n}: malformed JSON ({e.msg} at column {e.colno}); "
                                 "expected one JSON object per line") from None
            if not isinstance(obj, dict):
                raise ValueError(f"{path} line {n}: expected a JSON object, got {type(obj).__name__}")
            rows.append((n, obj))
    return rows


def _table_rows(path: Path, delimiter: str, needed: list[str]) -> list[tuple[int, dict]]:
    with path.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh, delimiter=delimiter)
        header = [c for c in (reader.fieldnames or []) if c is not None]
        if not header:
            raise ValueError(f"{path}: no header row (expected columns {', '.join(needed)})")
        for col in needed:
            if col not in header:
                raise ValueError(f"{path} line 1: no column {col!r} in the header "
                                 f"(columns found: {', '.join(header)})")
        return [(reader.line_num, row) for row in reader if any((v or "").strip() for k, v in row.items()
                                                                  if k is not None)]


def _field(path: Path, n: int, row: dict, col: str) -> str:
    if col not in row:
        raise ValueError(f"{path} line {n}: no column {col!r} (columns found: {', '.join(map(str, row))})")
    value = row[col]
    return "" if value is None else str(value).strip()


def load_pair_file(path: str | Path, *, more: str = "sent_more", less: str = "sent_less", group: str | None = None,
                   direction: str | None = None, item: str | None = None,
                   family: str | None = None) -> list[SentencePair]:
    """Sentence pairs from a user's file, ``a`` = the ``more`` (stereotyped) sentence, ``b`` = ``less``.

    The format follows the extension: ``.jsonl``/``.json`` (JSON lines, one object per line,
    blank lines skipped), ``.csv`` or ``.tsv`` (a header row).  Column names are configurable.

    Args:
        more, less: the columns of the more and the less stereotyped sentence.
        group: optional column giving the pair's group (bias type); ``""`` when not given.
        direction: optional column saying which side expresses the stereotype, values
            (case-insensitive) as in :data:`DIRECTION_VALUES`: ``"stereo"`` means the ``more``
            sentence is the stereotype (``stereotyped="a"``), ``"antistereo"`` means it violates
            the stereotype, so ``less`` is the stereotype (``stereotyped="b"``); empty,
            ``"none"`` or ``"neutral"`` -> ``None``.  Without the column every pair is ``None``.
        item: optional column of item ids (unique); default the data row number from 0.
        family: optional column of family ids; default the item id (each pair its own family).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: unknown extension, a missing column, an empty or identical sentence, a
            malformed JSON line, an unknown direction value, a duplicate item id, or fewer than
            :data:`MIN_PAIRS` pairs; the message names the file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pair file {path} does not exist")
    ext = path.suffix.lower()
    columns = [c for c in (more, less, group, direction, item, family) if c is not None]
    if ext in _JSON_EXTS:
        rows = _json_rows(path)
    elif ext in _DELIMITERS:
        rows = _table_rows(path, _DELIMITERS[ext], columns)
    else:
        raise ValueError(f"{path}: unknown extension {path.suffix!r} (expected .jsonl, .json, .csv or .tsv)")
    pairs: list[SentencePair] = []
    seen: dict[str, int] = {}
    for index, (n, row) in enumerate(rows):
        a, b = _field(path, n, row, more), _field(path, n, row, less)
        for col, text in ((more, a), (less, b)):
            if not text:
                raise ValueError(f"{path} line {n}: the sentence in column {col!r} is empty")
        if a == b:
            raise ValueError(f"{path} line {n}: the sentences in {more!r} and {less!r} are identical ({a!r})")
        side = None
        if direction is not None:
            value = _field(path, n, row, direction).lower()
            if value not in DIRECTION_VALUES:
                raise ValueError(f"{path} line {n}: unknown direction {value!r} in column {direction!r} "
                                 f"(expected one of {', '.join(repr(v) for v in DIRECTION_VALUES if v)})")
            side = DIRECTION_VALUES[value]
        item_id = _field(path, n, row, item) if item is not None else str(index)
        if not item_id:
            raise ValueError(f"{path} line {n}: the item id in column {item!r} is empty")
        if item_id in seen:
            raise ValueError(f"{path} line {n}: item id {item_id!r} already used on line {seen[item_id]}")
        seen[item_id] = n
        family_id = (_field(path, n, row, family) if family is not None else "") or item_id
        group_id = _field(path, n, row, group) if group is not None else ""
        pairs.append(SentencePair(a=a, b=b, item=item_id, family=family_id, group=group_id, stereotyped=side))
    if len(pairs) < MIN_PAIRS:
        raise ValueError(f"{path}: only {len(pairs)} pairs; at least {MIN_PAIRS} are needed to cut three splits")
    return pairs


# ------------------------------------------------------------------------------------- splits
def cut_pair_splits(pairs: Sequence[SentencePair], *, seed: int = 0,
                    fractions: tuple[float, float, float] = (1 / 3, 1 / 3, 1 / 3),
                    stratify_by_group: bool = True) -> dict[str, list[SentencePair]]:
    """Pairs dealt to :data:`SPLITS` (``search``, ``validation``, ``heldout``) by whole family.

    Families are dealt in a shuffled order (within each group when ``stratify_by_group``; a
    family's group is that of its first pair), each to the split furthest below its share
    ``fractions`` of the stratum's pairs, ties to the split furthest below its share overall,
    then at random.  A family never spans two splits; the cut is a deterministic function of
    ``(pairs, seed, fractions, stratify_by_group)``; each split keeps the input order.

    Raises ValueError when ``fractions`` are not three positive numbers, or when a split would
    get fewer than 2 families.
    """
    frac = np.asarray(fractions, dtype=float)
    if frac.shape != (len(SPLITS),) or not np.all(np.isfinite(frac)) or np.any(frac <= 0):
        raise ValueError(f"fractions must be {len(SPLITS)} positive numbers (for {SPLITS}), got {fractions!r}")
    frac = frac / frac.sum()
    members: dict[str, list[int]] = {}
    for i, p in enumerate(pairs):
        members.setdefault(p.family, []).append(i)
    families = list(members)
    stratum = {f: (pairs[members[f][0]].group if stratify_by_group else "") for f in families}
    rng = np.random.default_rng([seed, 0x7061697273])  # "pairs": its own stream, apart from other cuts
    load = np.zeros(len(SPLITS))
    dealt: list[list[str]] = [[] for _ in SPLITS]
    for s in sorted(set(stratum.values())):
        fams = [f for f in families if stratum[f] == s]
        in_stratum = np.zeros(len(SPLITS))
        for j in rng.permutation(len(fams)):
            size = len(members[fams[j]])
            key = np.lexsort((rng.random(len(SPLITS)), (load + size) / frac, (in_stratum + size) / frac))
            k = int(key[0])
            dealt[k].append(fams[j])
            in_stratum[k] += size
            load[k] += size
    for name, fams in zip(SPLITS, dealt, strict=True):
        if len(fams) < 2:
            raise ValueError(f"split {name!r} got {len(fams)} families of {len(families)}: each split needs at "
                             f"least 2 families (give more families or less uneven fractions than {fractions!r})")
    out = {}
    for name, fams in zip(SPLITS, dealt, strict=True):
        keep = sorted(i for f in fams for i in members[f])
        out[name] = [pairs[i] for i in keep]
    return out


def describe_pairs(pairs: Sequence[SentencePair]) -> dict:
    """Fingerprint material: ``sha256`` (16 hex chars over every pair's texts, ids, group and
    label, in order), ``n_pairs``, ``n_families``, ``groups`` (group -> pairs) and
    ``stereotyped`` (``"a"``/``"b"``/``"none"`` -> pairs)."""
    h = hashlib.sha256()
    for p in pairs:
        h.update(json.dumps([p.a, p.b, p.item, p.family, p.group, p.stereotyped]).encode())
        h.update(b"\n")
    labels = Counter(p.stereotyped or "none" for p in pairs)
    return {
        "sha256": h.hexdigest()[:16],
        "n_pairs": len(pairs),
        "n_families": len({p.family for p in pairs}),
        "groups": dict(sorted(Counter(p.group for p in pairs).items())),
        "stereotyped": {k: labels.get(k, 0) for k in ("a", "b", "none")},
    }
