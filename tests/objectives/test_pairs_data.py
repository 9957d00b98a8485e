"""Sentence pairs: the gender swapper, the built-in swap set, pair files, family splits, descriptions."""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from pathlib import Path

import pytest

from objectives.masked_lm import pairs as pairs_module
from objectives.masked_lm.data import SPLITS
from objectives.masked_lm.pairs import (
    DIRECTION_VALUES,
    GENDER_WORD_PAIRS,
    NAME_PAIRS,
    SentencePair,
    builtin_swap_pairs,
    cut_pair_splits,
    describe_pairs,
    load_pair_file,
    swap_gender,
)

WORD = re.compile(r"[A-Za-z]+")
MALE = {m for pairs in GENDER_WORD_PAIRS.values() for m, _ in pairs} | {"him", "his"}
FEMALE = {f for pairs in GENDER_WORD_PAIRS.values() for _, f in pairs} | {"her", "hers"}
MALE_NAMES = {m for m, _ in NAME_PAIRS}
FEMALE_NAMES = {f for _, f in NAME_PAIRS}


# --------------------------------------------------------------------------------- swapper
@pytest.mark.parametrize("text, expected", [
    # both directions, in one pass
    ("He gave the book to his sister.", "She gave the book to her brother."),
    ("The boys and the girls played with their mothers and fathers.",
     "The girls and the boys played with their fathers and mothers."),
    ("My husband met your wife.", "My wife met your husband."),
    # capitalisation
    ("She is here. HE IS THERE.", "He is here. SHE IS THERE."),
    ("Her brother is a doctor.", "His sister is a doctor."),
    ("His aunt and HIS uncle", "Her uncle and HER aunt"),
    # punctuation and spacing kept
    ("he,she;him  ...  herself!", "she,he;her  ...  himself!"),
    ("\u201cHer?\u201d he asked.", "\u201cHim?\u201d she asked."),
    ("He's proud of himself, isn't he?", "She's proud of herself, isn't she?"),
    # possessive vs object "her", and "his" vs "hers"
    ("I saw her at the station.", "I saw him at the station."),
    ("I called her.", "I called him."),
    ("We told her the truth.", "We told him the truth."),
    ("She asked her to wait.", "He asked him to wait."),
    ("Her own car broke down, so she borrowed her mother's.", "His own car broke down, so he borrowed his father's."),
    ("The car is his.", "The car is hers."),
    ("She said the car was hers, not his.", "He said the car was his, not hers."),
    ("His is the red one.", "Hers is the red one."),
    ("I gave her her keys.", "I gave him his keys."),
    # titles, family, occupations, hyphenated words
    ("Mr. Smith met the king and the queen.", "Ms. Smith met the queen and the king."),
    ("Sir, the lady is waiting.", "Madam, the gentleman is waiting."),
    ("My father-in-law is an actor.", "My mother-in-law is an actress."),
    ("The waitresses thanked the gentlemen.", "The waiters thanked the ladies."),
    ("Her nephew called his grandmother.", "His niece called her grandfather."),
    ("The policeman's boyfriend", "The policewoman's girlfriend"),
    # names, both directions, only when capitalised
    ("John and Mary are friends.", "Mary and John are friends."),
    ("Emily met James and Lucy met Jack.", "James met Emily and Jack met Lucy."),
    ("Please jack up the car, Jack.", "Please jack up the car, Lucy."),
    ("KATE called RYAN.", "RYAN called KATE."),
    # whole words only
    ("The shepherd said these were history.", "The shepherd said these were history."),
    ("Others manage the menu of human heroes; themselves together.",
     "Others manage the menu of human heroes; themselves together."),
    ("Mankind, sheriffs, hemp, hiss, hisself, hero", "Mankind, sheriffs, hemp, hiss, hisself, hero"),
    ("", ""),
])
def test_swap_gender_table(text, expected):
    assert swap_gender(text) == expected


def test_swap_gender_one_way_words_and_numbers():
    assert swap_gender("Mrs. Jones") == "Mr. Jones"  # one way: Mr swaps back to Ms
    assert swap_gender("her 3 cats") == "his 3 cats"  # a number opens a noun phrase


def test_swap_dictionary_is_a_bijection_and_matches_docstring_table():
    regular = [p for pairs in GENDER_WORD_PAIRS.values() for p in pairs]
    words = [w for p in regular for w in p]
    assert len(words) == len(set(words)), "a gender word is listed twice"
    assert not set(words) & {"her", "his", "him", "hers"}  # handled by the rule
    for male, female in regular:
        assert swap_gender(male) == female and swap_gender(female) == male
    names = [n for p in NAME_PAIRS for n in p]
    assert len(NAME_PAIRS) >= 20 and len(names) == len(set(names))
    assert all(abs(len(m) - len(f)) <= 1 for m, f in NAME_PAIRS)
    for male, female in NAME_PAIRS:
        assert swap_gender(male) == female and swap_gender(female) == male
    # the module docstring's table lists exactly the pairs the code swaps
    doc = pairs_module.__doc__
    table = doc[doc.index("kind            male/female pairs"):doc.index("one way")]
    documented = set(re.findall(r"([A-Za-z]+)/([A-Za-z]+)", table.split("\n", 2)[2]))
    coded = set(regular) | set(NAME_PAIRS) | {("him", "her"), ("his", "her"), ("his", "hers")}
    assert documented == coded


# --------------------------------------------------------------------------- built-in set
def _sides_gender(text: str) -> tuple[set[str], set[str]]:
    words = WORD.findall(text)
    male = {w for w in words if w.lower() in MALE or w in MALE_NAMES}
    female = {w for w in words if w.lower() in FEMALE or w in FEMALE_NAMES}
    return male, female


def test_builtin_double_swap_is_identity_for_every_sentence():
    for p in builtin_swap_pairs():
        assert swap_gender(p.a) == p.b, p.item
        assert swap_gender(p.b) == p.a, p.item
        assert swap_gender(swap_gender(p.a)) == p.a and swap_gender(swap_gender(p.b)) == p.b


def test_builtin_sides_differ_only_in_dictionary_words_and_are_one_gender_each():
    for p in builtin_swap_pairs():
        assert p.a != p.b, p.item
        assert WORD.split(p.a) == WORD.split(p.b), p.item  # same punctuation and spacing
        wa, wb = WORD.findall(p.a), WORD.findall(p.b)
        assert len(wa) == len(wb)
        for x, y in zip(wa, wb, strict=True):
            if x != y:
                assert x.lower() in FEMALE or x in FEMALE_NAMES, (p.item, x)
                assert y.lower() in MALE or y in MALE_NAMES, (p.item, y)
        a_male, a_female = _sides_gender(p.a)
        b_male, b_female = _sides_gender(p.b)
        assert a_female and not a_male, p.item  # a: the female version, no male word in it
        assert b_male and not b_female, p.item
        for text in (p.a, p.b):
            assert 8 <= len(text.split()) <= 20, text
            # the pronoun rule's known weak spots are not used
            assert not re.search(r"\b(her|his)\s+(home|back)\b", text, re.IGNORECASE), text


def test_builtin_set_sizes_ids_and_label_balance():
    pairs = builtin_swap_pairs()
    assert pairs == builtin_swap_pairs() and pairs is not builtin_swap_pairs()  # a fresh list each call
    by_family: dict[str, list[SentencePair]] = {}
    for p in pairs:
        by_family.setdefault(p.family, []).append(p)
    assert len(by_family) >= 60
    assert all(3 <= len(v) <= 4 for v in by_family.values())
    assert len({p.item for p in pairs}) == len(pairs)
    assert {p.group for p in pairs} == {"gender"}
    assert all(len({p.stereotyped for p in v}) == 1 for v in by_family.values())
    labels = Counter(v[0].stereotyped for v in by_family.values())
    assert set(labels) == {"a", "b", None}
    assert 0.5 <= (labels["a"] + labels["b"]) / len(by_family) <= 0.7
    assert abs(labels["a"] - labels["b"]) <= 2
    # written gender: about half female, half male, within each label
    spec = pairs_module._SWAP_FAMILIES
    assert [f for f, *_ in spec] == list(by_family)
    for stereo in ("f", "m", None):
        written = Counter(w for _, w, s, _ in spec if s == stereo)
        assert abs(written["f"] - written["m"]) <= 2, stereo
    # the written sentence is the side of its gender
    for (family, written, _, sentences) in spec:
        side = "a" if written == "f" else "b"
        assert [getattr(p, side) for p in by_family[family]] == list(sentences)


# -------------------------------------------------------------------------------- splits
def _families_by_split(splits: dict[str, list[SentencePair]]) -> dict[str, set[str]]:
    return {name: {p.family for p in ps} for name, ps in splits.items()}


def test_cut_keeps_families_whole_covers_everything_and_is_deterministic():
    pairs = builtin_swap_pairs()
    splits = cut_pair_splits(pairs, seed=3)
    assert tuple(splits) == SPLITS
    fams = _families_by_split(splits)
    assert not (fams["search"] & fams["validation"] or fams["search"] & fams["heldout"]
                or fams["validation"] & fams["heldout"])
    assert sorted(p.item for ps in splits.values() for p in ps) == sorted(p.item for p in pairs)
    assert all(len(f) >= 2 for f in fams.values())
    sizes = [len(splits[s]) for s in SPLITS]
    assert max(sizes) - min(sizes) <= 4  # families of 3 pairs, dealt evenly
    order = {p.item: i for i, p in enumerate(pairs)}
    for ps in splits.values():
        assert [order[p.item] for p in ps] == sorted(order[p.item] for p in ps)
    assert cut_pair_splits(pairs, seed=3) == splits
    assert cut_pair_splits(pairs, seed=4) != splits
    # labels are spread too: every split sees both stereotype sides
    for ps in splits.values():
        assert {p.stereotyped for p in ps} >= {"a", "b"}


def _toy(n_families: int, per_family: int = 1, groups: tuple[str, ...] = ("",)) -> list[SentencePair]:
    return [SentencePair(a=f"a {f} {k}", b=f"b {f} {k}", item=f"{f}.{k}", family=f"f{f}",
                         group=groups[f % len(groups)]) for f in range(n_families) for k in range(per_family)]


def test_cut_stratifies_by_group_and_follows_fractions():
    pairs = _toy(24, groups=("race", "gender", "age"))
    for seed in range(5):
        splits = cut_pair_splits(pairs, seed=seed)
        for group in ("race", "gender", "age"):  # 8 families per group: 3, 3 and 2 per split
            assert sorted(sum(p.group == group for p in splits[s]) for s in SPLITS) == [2, 3, 3]
        assert sorted(len(splits[s]) for s in SPLITS) == [8, 8, 8]
    uneven = cut_pair_splits(_toy(40), fractions=(0.5, 0.25, 0.25), seed=1)
    assert [len(uneven[s]) for s in SPLITS] == [20, 10, 10]
    weights = cut_pair_splits(_toy(40), fractions=(2, 1, 1), seed=1)  # normalised
    assert weights == uneven
    # families of several pairs move together
    splits = cut_pair_splits(_toy(9, per_family=4), seed=0)
    assert all(len(ps) % 4 == 0 for ps in splits.values())
    assert all(len({p.family for p in ps}) == 3 for ps in splits.values())


def test_cut_without_stratification_ignores_groups():
    pairs = _toy(6, groups=("x", "y"))
    a = cut_pair_splits(pairs, seed=0, stratify_by_group=False)
    assert all(len(ps) == 2 for ps in a.values())


def test_cut_errors():
    with pytest.raises(ValueError, match="at least 2 families"):
        cut_pair_splits(_toy(5), seed=0)
    with pytest.raises(ValueError, match="at least 2 families"):
        cut_pair_splits(_toy(6, per_family=3), seed=0, fractions=(0.8, 0.1, 0.1))
    with pytest.raises(ValueError, match="at least 2 families"):
        cut_pair_splits([SentencePair("x", "y", str(i), "one") for i in range(30)])
    for bad in ((0.5, 0.5), (0.5, 0.5, 0.0), (1.0, -1.0, 1.0), (float("nan"), 1.0, 1.0)):
        with pytest.raises(ValueError, match="fractions must be 3 positive numbers"):
            cut_pair_splits(_toy(12), fractions=bad)


def test_sentence_pair_rejects_bad_label():
    with pytest.raises(ValueError, match="stereotyped"):
        SentencePair("x", "y", "0", "0", stereotyped="c")


# ------------------------------------------------------------------------------- describe
def test_describe_pairs_hash_and_counts():
    pairs = builtin_swap_pairs()
    d = describe_pairs(pairs)
    assert re.fullmatch(r"[0-9a-f]{16}", d["sha256"])
    assert d["n_pairs"] == len(pairs) and d["n_families"] == len({p.family for p in pairs})
    assert d["groups"] == {"gender": len(pairs)}
    assert sum(d["stereotyped"].values()) == len(pairs) and set(d["stereotyped"]) == {"a", "b", "none"}
    assert describe_pairs(builtin_swap_pairs()) == d
    changed = [SentencePair(a=pairs[0].a + "!", b=pairs[0].b, item=pairs[0].item, family=pairs[0].family,
                            group=pairs[0].group, stereotyped=pairs[0].stereotyped)] + pairs[1:]
    assert describe_pairs(changed)["sha256"] != d["sha256"]
    assert describe_pairs(pairs[::-1])["sha256"] != d["sha256"]
    assert describe_pairs([])["n_pairs"] == 0


# ---------------------------------------------------------------------------- pair files
ROWS = [
    ("Women are too emotional to lead a team.", "Men are too emotional to lead a team.", "stereo", "gender"),
    ("Old people cannot learn to use phones.", "Young people cannot learn to use phones.", "stereo", "age"),
    ("The rich man was generous to everyone.", "The poor man was generous to everyone.", "antistereo", "class"),
    ("Tall people are good at basketball.", "Short people are good at basketball.", "stereo", "body"),
    ("The boy was bad at painting.", "The girl was bad at painting.", "antistereo", "gender"),
    ("Farmers never read books.", "Lawyers never read books.", "stereo", "class"),
    ("The old man forgot the meeting.", "The young man forgot the meeting.", "", "age"),
]


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _write_table(path: Path, header: list[str], rows: list[tuple], delimiter: str = ",") -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, delimiter=delimiter)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_load_jsonl_defaults(tmp_path):
    rows = [{"sent_more": m, "sent_less": s, "stereo_antistereo": d, "bias_type": g} for m, s, d, g in ROWS]
    path = _write_jsonl(tmp_path / "pairs.jsonl", rows)
    path.write_text(path.read_text() + "\n\n", encoding="utf-8")  # trailing blank lines are skipped
    pairs = load_pair_file(path)
    assert len(pairs) == len(ROWS)
    assert pairs[0] == SentencePair(a=ROWS[0][0], b=ROWS[0][1], item="0", family="0", group="", stereotyped=None)
    assert [p.item for p in pairs] == [str(i) for i in range(len(ROWS))]
    assert all(p.family == p.item for p in pairs)
    labelled = load_pair_file(path, direction="stereo_antistereo", group="bias_type")
    assert [p.stereotyped for p in labelled] == ["a", "a", "b", "a", "b", "a", None]
    assert [p.group for p in labelled] == [g for *_, g in ROWS]


def test_load_csv_with_configured_columns_items_and_families(tmp_path):
    header = ["id", "more", "less", "dir", "type", "template"]
    rows = [(f"x{i}", m, s, d.upper(), g, f"t{max(i - 1, 0)}") for i, (m, s, d, g) in enumerate(ROWS)]
    path = _write_table(tmp_path / "pairs.csv", header, rows)
    pairs = load_pair_file(path, more="more", less="less", direction="dir", group="type", item="id",
                           family="template")
    assert [p.item for p in pairs] == [f"x{i}" for i in range(len(ROWS))]
    assert [p.family for p in pairs] == ["t0", "t0", "t1", "t2", "t3", "t4", "t5"]
    assert [p.stereotyped for p in pairs] == ["a", "a", "b", "a", "b", "a", None]
    splits = cut_pair_splits(pairs, seed=0, stratify_by_group=False)
    fams = _families_by_split(splits)
    assert sum(len(f) for f in fams.values()) == 6  # each family in one split only
    assert any({"x0", "x1"} <= {p.item for p in ps} for ps in splits.values())


def test_load_tsv_and_json_lines_extension(tmp_path):
    path = _write_table(tmp_path / "pairs.TSV", ["sent_more", "sent_less"], [r[:2] for r in ROWS], delimiter="\t")
    assert [p.a for p in load_pair_file(path)] == [r[0] for r in ROWS]
    path = _write_jsonl(tmp_path / "pairs.json", [{"sent_more": m, "sent_less": s} for m, s, *_ in ROWS])
    assert [p.b for p in load_pair_file(str(path))] == [r[1] for r in ROWS]


def test_direction_values_cover_common_spellings():
    assert DIRECTION_VALUES["stereo"] == "a" and DIRECTION_VALUES["antistereo"] == "b"
    assert DIRECTION_VALUES["anti-stereo"] == "b" and DIRECTION_VALUES[""] is None


def _rows(n: int = 7) -> list[dict]:
    return [{"sent_more": f"Sentence number {i} is more.", "sent_less": f"Sentence number {i} is less."}
            for i in range(n)]


def test_load_errors_missing_file_and_extension(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"pair file .*nope\.jsonl does not exist"):
        load_pair_file(tmp_path / "nope.jsonl")
    (tmp_path / "pairs.txt").write_text("x\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"pairs\.txt: unknown extension '\.txt' \(expected \.jsonl, \.json, "
                                         r"\.csv or \.tsv\)"):
        load_pair_file(tmp_path / "pairs.txt")


def test_load_errors_missing_columns(tmp_path):
    path = _write_table(tmp_path / "p.csv", ["good", "bad"], [("a", "b")] * 7)
    with pytest.raises(ValueError, match=r"p\.csv line 1: no column 'sent_more' in the header "
                                         r"\(columns found: good, bad\)"):
        load_pair_file(path)
    with pytest.raises(ValueError, match=r"no column 'label' in the header"):
        load_pair_file(path, more="good", less="bad", direction="label")
    rows = _rows()
    del rows[4]["sent_less"]
    path = _write_jsonl(tmp_path / "p.jsonl", rows)
    with pytest.raises(ValueError, match=r"p\.jsonl line 5: no column 'sent_less' \(columns found: sent_more\)"):
        load_pair_file(path)
    (tmp_path / "empty.csv").write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match=r"empty\.csv: no header row"):
        load_pair_file(tmp_path / "empty.csv")


def test_load_errors_empty_and_identical_sentences(tmp_path):
    rows = _rows()
    rows[2]["sent_less"] = "   "
    with pytest.raises(ValueError, match=r"p\.jsonl line 3: the sentence in column 'sent_less' is empty"):
        load_pair_file(_write_jsonl(tmp_path / "p.jsonl", rows))
    rows = _rows()
    rows[0]["sent_more"] = None
    with pytest.raises(ValueError, match=r"line 1: the sentence in column 'sent_more' is empty"):
        load_pair_file(_write_jsonl(tmp_path / "p.jsonl", rows))
    table = [(r["sent_more"], r["sent_less"]) for r in _rows()]
    table[5] = ("Same words here.", "Same words here.")
    with pytest.raises(ValueError, match=r"p\.csv line 7: the sentences in 'sent_more' and 'sent_less' are "
                                         r"identical \('Same words here\.'\)"):
        load_pair_file(_write_table(tmp_path / "p.csv", ["sent_more", "sent_less"], table))


def test_load_errors_malformed_json_and_not_an_object(tmp_path):
    path = tmp_path / "p.jsonl"
    lines = [json.dumps(r) for r in _rows()]
    lines[3] = lines[3][:-1]  # drop the closing brace
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"p\.jsonl line 4: malformed JSON \(.*\); expected one JSON object per "
                                         r"line"):
        load_pair_file(path)
    path.write_text("\n".join([json.dumps(r) for r in _rows()] + ['["a", "b"]']) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"line 8: expected a JSON object, got list"):
        load_pair_file(path)


def test_load_errors_direction_items_and_too_few_pairs(tmp_path):
    rows = _rows()
    for r in rows:
        r["label"] = "stereo"
    rows[6]["label"] = "sideways"
    with pytest.raises(ValueError, match=r"line 7: unknown direction 'sideways' in column 'label' "
                                         r"\(expected one of 'stereo'"):
        load_pair_file(_write_jsonl(tmp_path / "p.jsonl", rows), direction="label")
    rows = _rows()
    for i, r in enumerate(rows):
        r["id"] = f"q{min(i, 5)}"
    with pytest.raises(ValueError, match=r"line 7: item id 'q5' already used on line 6"):
        load_pair_file(_write_jsonl(tmp_path / "p.jsonl", rows), item="id")
    with pytest.raises(ValueError, match=r"p\.jsonl: only 5 pairs; at least 6 are needed to cut three splits"):
        load_pair_file(_write_jsonl(tmp_path / "p.jsonl", _rows(5)))
    assert len(load_pair_file(_write_jsonl(tmp_path / "p.jsonl", _rows(6)))) == 6
