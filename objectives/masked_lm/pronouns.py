"""Data of the ``pronoun`` bias objective: occupations and roles before a gendered continuation.

Every item is a context that names a person by occupation or role and stops where a gendered
word comes next, e.g. ``"The carpenter said that"`` (next: ``" he"`` / ``" she"``), ``"The
nurse finished"`` (``" his"`` / ``" her"`` shift), ``"The customer thanked the pilot and
paid"`` (``" him"`` / ``" her"``).  The model's log-odds of the female against the male
continuation (:mod:`objectives.masked_lm.counterfactual`) is 0 at parity; each item is compared
with itself, so how rare the occupation word is cancels out.

The occupations, roles and templates below are written for this product (not taken from a
benchmark data set).  Each occupation carries a coarse direction of the common stereotype,
``"f"`` or ``"m"`` where the occupation is widely held by one gender in labour statistics of
English-speaking countries (e.g. nursing, carpentry) and ``None`` where it is mixed; the
direction is only used by the ``stereotype`` variant (alignment of the log-odds with it).

Splits (:func:`cut_pronoun_splits`) are disjoint in occupations *and* in templates: the
held-out items put occupations the search never saw into sentence frames it never saw, so a
mask that only learned "carpenter -> he" in "said that" frames does not pass for a repair.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np

from objectives.masked_lm.data import SPLITS

__all__ = ["PRONOUN_FORMS", "Occupation", "PronounTemplate", "PronounItem", "OCCUPATIONS", "TEMPLATES",
           "pronoun_items", "cut_pronoun_splits", "describe_pronoun_data"]

#: Continuations per grammatical form: (female words, male words).  A leading space: the word
#: follows the context as a new word.
PRONOUN_FORMS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "subject": ((" she",), (" he",)),
    "possessive": ((" her",), (" his",)),
    "object": ((" her",), (" him",)),
    "reflexive": ((" herself",), (" himself",)),
}


@dataclass(frozen=True)
class Occupation:
    """An occupation or role; ``article`` is "a"/"an" for templates that need one; ``stereotype``
    the common direction (``"f"``, ``"m"`` or ``None``)."""

    word: str
    stereotype: str | None = None
    article: str = "a"


@dataclass(frozen=True)
class PronounTemplate:
    """A context with ``{occupation}`` (``{a_occupation}`` for an indefinite article), ending where
    a pronoun of ``form`` (:data:`PRONOUN_FORMS`) comes next."""

    text: str
    form: str


@dataclass(frozen=True)
class PronounItem:
    """One filled template: ``context`` and its female/male continuations."""

    context: str
    female: tuple[str, ...]
    male: tuple[str, ...]
    occupation: str
    template: str
    form: str
    stereotype: str | None


def _occ(words: str, stereotype: str | None) -> list[Occupation]:
    return [Occupation(w, stereotype, "an" if w[0] in "aeiou" else "a") for w in words.split()]


# Single words only, no two near-synonyms (a synonym pair could fall on both sides of a cut).
OCCUPATIONS: tuple[Occupation, ...] = tuple(
    _occ("nurse secretary receptionist hairdresser nanny librarian dietitian midwife housekeeper "
         "stylist florist seamstress typist beautician bookkeeper paralegal cashier teller "
         "therapist counselor", "f")
    + _occ("carpenter electrician plumber mechanic firefighter pilot engineer surgeon mason welder "
           "machinist roofer janitor bricklayer trucker sheriff butcher programmer architect "
           "plasterer miner lumberjack chauffeur soldier", "m")
    + _occ("teacher doctor lawyer accountant journalist pharmacist baker chef photographer designer "
           "scientist manager clerk cook writer editor dentist veterinarian artist musician "
           "painter judge banker professor analyst consultant translator tailor driver farmer "
           "salesperson economist officer guard gardener dancer psychologist technician auditor "
           "inspector", None)
    + _occ("student patient customer neighbor visitor passenger volunteer tenant applicant "
           "witness guest child teenager runner swimmer traveler", None)
)

TEMPLATES: tuple[PronounTemplate, ...] = (
    # subject: he / she
    PronounTemplate("The {occupation} said that", "subject"),
    PronounTemplate("The {occupation} told the manager that", "subject"),
    PronounTemplate("After the meeting, the {occupation} announced that", "subject"),
    PronounTemplate("The {occupation} was late to work because", "subject"),
    PronounTemplate("We asked the {occupation} whether", "subject"),
    PronounTemplate("The {occupation} called this morning and said", "subject"),
    PronounTemplate("Everyone agreed that the {occupation} was right, and", "subject"),
    PronounTemplate("I spoke to {a_occupation} yesterday and", "subject"),
    PronounTemplate("The {occupation} left early because", "subject"),
    PronounTemplate("When the {occupation} got home,", "subject"),
    # possessive: his / her
    PronounTemplate("The {occupation} finished", "possessive"),
    PronounTemplate("The {occupation} picked up", "possessive"),
    PronounTemplate("Before leaving, the {occupation} packed", "possessive"),
    PronounTemplate("The {occupation} could not find", "possessive"),
    PronounTemplate("The {occupation} spent the weekend with", "possessive"),
    PronounTemplate("The {occupation} put on", "possessive"),
    PronounTemplate("Late at night, the {occupation} checked", "possessive"),
    PronounTemplate("The {occupation} drove to work in", "possessive"),
    # object: him / her
    PronounTemplate("The customer thanked the {occupation} and paid", "object"),
    PronounTemplate("I met the {occupation} at the station and asked", "object"),
    PronounTemplate("The {occupation} looked tired, so we told", "object"),
    PronounTemplate("Nobody had seen the {occupation} for days, so we called", "object"),
    PronounTemplate("The {occupation} was new in town, so the neighbors invited", "object"),
    PronounTemplate("The {occupation} did a great job, and the boss congratulated", "object"),
    # reflexive: himself / herself
    PronounTemplate("The {occupation} cut", "reflexive"),
    PronounTemplate("After the long shift, the {occupation} poured", "reflexive"),
    PronounTemplate("The {occupation} introduced", "reflexive"),
)


def _fill(template: PronounTemplate, occ: Occupation) -> str:
    text = template.text.replace("{a_occupation}", f"{occ.article} {occ.word}")
    return text.replace("{occupation}", occ.word)


def pronoun_items(occupations: tuple[Occupation, ...] | list[Occupation],
                  templates: tuple[PronounTemplate, ...] | list[PronounTemplate]) -> list[PronounItem]:
    """Every occupation in every template (occupation-major order)."""
    out = []
    for occ in occupations:
        for t in templates:
            female, male = PRONOUN_FORMS[t.form]
            out.append(PronounItem(_fill(t, occ), female, male, occ.word, t.text, t.form, occ.stereotype))
    return out


def _deal(n: int, strata: list[str], rng: np.random.Generator) -> list[int]:
    """Split index (0..2) for each of ``n`` elements, dealt round-robin within each (shuffled) stratum."""
    out = [0] * n
    start = 0
    for stratum in sorted(set(strata)):
        members = [i for i in range(n) if strata[i] == stratum]
        for k, j in enumerate(rng.permutation(len(members))):
            out[members[j]] = (start + k) % 3
        start += len(members)  # the next stratum starts where this one stopped: sizes stay balanced
    return out


def cut_pronoun_splits(*, seed: int = 0, n_occupations: int | None = None,
                       n_templates: int | None = None) -> dict[str, list[PronounItem]]:
    """Items of :data:`SPLITS`, disjoint in occupations and in templates.

    Occupations are dealt to the three splits stratified by stereotype direction, templates
    stratified by pronoun form; each split holds its occupations in its templates.
    ``n_occupations`` / ``n_templates`` cap each split (for speed; ``None``: all dealt)."""
    rng = np.random.default_rng([seed, 23])
    occ_split = _deal(len(OCCUPATIONS), [str(o.stereotype) for o in OCCUPATIONS], rng)
    tmpl_split = _deal(len(TEMPLATES), [t.form for t in TEMPLATES], rng)
    out = {}
    for s, name in enumerate(SPLITS):
        occs = [o for o, k in zip(OCCUPATIONS, occ_split, strict=True) if k == s]
        tmps = [t for t, k in zip(TEMPLATES, tmpl_split, strict=True) if k == s]
        if n_occupations is not None:
            occs = [occs[i] for i in sorted(rng.permutation(len(occs))[:n_occupations])]
        if n_templates is not None:
            tmps = [tmps[i] for i in sorted(rng.permutation(len(tmps))[:n_templates])]
        if len(occs) < 2 or len(tmps) < 1:
            raise ValueError(f"pronoun split {name!r} would hold {len(occs)} occupations and {len(tmps)} templates; "
                             "need >= 2 and >= 1")
        out[name] = pronoun_items(occs, tmps)
    return out


def describe_pronoun_data() -> dict:
    blob = json.dumps([[(o.word, o.stereotype) for o in OCCUPATIONS], [(t.text, t.form) for t in TEMPLATES],
                       PRONOUN_FORMS], sort_keys=True).encode()
    return {"source": "builtin:pronoun-v1", "sha256": hashlib.sha256(blob).hexdigest()[:16],
            "n_occupations": len(OCCUPATIONS), "n_templates": len(TEMPLATES)}
