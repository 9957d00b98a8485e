"""The gender swapper of the sentence pairs: word table, first names, the her/his rule, :func:`swap_gender`.

The table and the pronoun rule are documented in the docstring of
:mod:`objectives.masked_lm.pairs` (a test checks that table against the pairs coded here);
:mod:`~objectives.masked_lm.pairs` re-exports every public name of this module.
"""

from __future__ import annotations

import re

__all__ = ["swap_gender", "GENDER_WORD_PAIRS", "NAME_PAIRS", "PRONOUN_CUES"]


# (male, female), lower case; the pronouns her/his/hers/him are handled by the rule below.
GENDER_WORD_PAIRS: dict[str, tuple[tuple[str, str], ...]] = {
    "pronouns": (("he", "she"), ("himself", "herself")),
    "people": (("man", "woman"), ("men", "women"), ("boy", "girl"), ("boys", "girls"), ("male", "female"),
               ("males", "females"), ("guy", "gal"), ("guys", "gals"), ("lad", "lass"),
               ("schoolboy", "schoolgirl"), ("schoolboys", "schoolgirls")),
    "family": (("father", "mother"), ("fathers", "mothers"), ("dad", "mom"), ("dads", "moms"), ("daddy", "mommy"),
               ("son", "daughter"), ("sons", "daughters"), ("brother", "sister"), ("brothers", "sisters"),
               ("husband", "wife"), ("husbands", "wives"), ("uncle", "aunt"), ("uncles", "aunts"),
               ("nephew", "niece"), ("nephews", "nieces"), ("grandfather", "grandmother"),
               ("grandfathers", "grandmothers"), ("grandpa", "grandma"), ("grandson", "granddaughter"),
               ("grandsons", "granddaughters"), ("stepfather", "stepmother"), ("stepson", "stepdaughter"),
               ("boyfriend", "girlfriend"), ("boyfriends", "girlfriends"), ("widower", "widow"),
               ("widowers", "widows")),
    "titles": (("mr", "ms"), ("sir", "madam"), ("king", "queen"), ("kings", "queens"), ("prince", "princess"),
               ("princes", "princesses"), ("duke", "duchess"), ("emperor", "empress"), ("gentleman", "lady"),
               ("gentlemen", "ladies")),
    "occupations": (("actor", "actress"), ("actors", "actresses"), ("waiter", "waitress"),
                    ("waiters", "waitresses"), ("steward", "stewardess"), ("stewards", "stewardesses"),
                    ("headmaster", "headmistress"),
                    ("policeman", "policewoman"), ("policemen", "policewomen"),
                    ("businessman", "businesswoman"), ("businessmen", "businesswomen"),
                    ("chairman", "chairwoman"), ("spokesman", "spokeswoman"), ("salesman", "saleswoman"),
                    ("salesmen", "saleswomen"), ("sportsman", "sportswoman"), ("monk", "nun"), ("monks", "nuns")),
}
# One-way replacements (not inverted by a second swap).
_ONE_WAY = {"mrs": "mr"}

# (male, female) first names, as written; swapped only when capitalised.
NAME_PAIRS: tuple[tuple[str, str], ...] = (
    ("John", "Mary"), ("James", "Emily"), ("David", "Sarah"), ("Michael", "Jessica"), ("Robert", "Rachel"),
    ("William", "Abigail"), ("Daniel", "Hannah"), ("Thomas", "Sophie"), ("Peter", "Alice"), ("Paul", "Emma"),
    ("Steven", "Lauren"), ("Andrew", "Amanda"), ("Kevin", "Karen"), ("Brian", "Megan"), ("Jason", "Julia"),
    ("Eric", "Lisa"), ("Ryan", "Kate"), ("Adam", "Ella"), ("Jack", "Lucy"), ("George", "Nicole"),
    ("Henry", "Helen"), ("Samuel", "Claire"), ("Matthew", "Melissa"), ("Charles", "Natalie"),
    ("Joseph", "Olivia"), ("Tom", "Amy"),
)

# Words after which "her"/"his" is an object or independent pronoun, not a possessive determiner.
PRONOUN_CUES: frozenset[str] = frozenset("""
about above across after against along among around at before behind below beneath beside besides between
beyond by despite down during except for from in inside into like near of off on onto out outside over past
since through throughout till to toward towards under underneath until up upon via with within without
and or but nor so yet because if when whenever while unless although though than that whether where wherever as
again also always anyway away back even ever here home instead just later lately now never often once perhaps
quickly quietly really seriously slowly soon sometimes still there today together tomorrow tonight too twice
usually very well yesterday alone afterwards anymore enough
a an the this these those each every some any all another no what which who whom whose how why
i you he she it we they me him her us them my your our their its myself yourself himself herself ourselves
themselves someone something anyone anything everyone everything nothing nobody
is was are were be been being am has have had do does did will would can could shall should may might must not
""".split())

_WORD = re.compile(r"[A-Za-z]+")
_NEXT_WORD = re.compile(r"\s*([A-Za-z0-9]+)")


def _word_map() -> dict[str, str]:
    out: dict[str, str] = {}
    for pairs in GENDER_WORD_PAIRS.values():
        for male, female in pairs:
            for src, dst in ((male, female), (female, male)):
                if src in out:
                    raise AssertionError(f"gender word {src!r} listed twice")  # a table error, caught on import
                out[src] = dst
    for src, dst in _ONE_WAY.items():
        out.setdefault(src, dst)
    return out


_WORDS = _word_map()
_NAMES = {src.lower(): dst for m, f in NAME_PAIRS for src, dst in ((m, f), (f, m))}


def _same_case(src: str, dst: str) -> str:
    if len(src) > 1 and src.isupper():
        return dst.upper()
    if src[0].isupper():
        return dst[0].upper() + dst[1:]
    return dst


def _is_pronoun_use(text: str, end: int) -> bool:
    """True when the word ending at ``end`` is followed by punctuation, the end or a cue word."""
    m = _NEXT_WORD.match(text, end)
    return m is None or m.group(1).lower() in PRONOUN_CUES


def _swap_word(word: str, text: str, end: int) -> str:
    low = word.lower()
    if low == "her":
        dst = "him" if _is_pronoun_use(text, end) else "his"
    elif low == "his":
        dst = "hers" if _is_pronoun_use(text, end) else "her"
    elif low == "him":
        dst = "her"
    elif low == "hers":
        dst = "his"
    elif low in _WORDS:
        dst = _WORDS[low]
    elif low in _NAMES and word[0].isupper():
        dst = _NAMES[low]
    else:
        return word
    return _same_case(word, dst)


def swap_gender(text: str) -> str:
    """``text`` with every gendered word of the module table swapped to the other gender.

    Both directions in one pass; whole words only; capitalisation, punctuation and spacing
    kept; ``her``/``his`` resolved by the next word (see the module docstring)."""
    return _WORD.sub(lambda m: _swap_word(m.group(), text, m.end()), text)
