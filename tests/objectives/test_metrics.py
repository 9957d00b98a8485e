"""Metric formulas on hand-computed cases, and the forward passes on tiny random models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from objectives.masked_lm.classifiers import CLASSIFIERS, Classifier, make_classifier, register_classifier
from objectives.masked_lm.masking import HeadMasker
from objectives.masked_lm.metrics import (
    UnitTable,
    bootstrap_bias,
    bootstrap_perplexity,
    bootstrap_weights,
    crossed_weights,
    encode_sentences,
    generate,
    group_bias,
    group_bias_items,
    item_bootstrap,
    pair_fraction,
    perplexity,
    sentence_logprobs,
    window_nll,
)

# Items: descriptor A (bucket x) scores 1, 3; B (bucket x) 2; C (bucket y) 6, 6.
SCORES = np.array([1.0, 3.0, 2.0, 6.0, 6.0])
TABLE = UnitTable.build(["A", "A", "B", "C", "C"], ["x", "x", "x", "y", "y"])


def test_group_bias_by_hand():
    s, c = TABLE.unit_sums(SCORES)
    assert s.tolist() == [4.0, 2.0, 12.0] and c.tolist() == [2.0, 1.0, 2.0]
    # axis mean M = 18/5 = 3.6; bucket means x = 6/3 = 2, y = 6; descriptor means 2, 2, 6
    assert group_bias(s, c, TABLE.bucket_of_unit, aggregate="sum")[0] == pytest.approx(1.6 + 2.4)
    assert group_bias(s, c, TABLE.bucket_of_unit, aggregate="weighted")[0] == pytest.approx(3 / 5 * 1.6 + 2 / 5 * 2.4)
    assert group_bias(s, c, TABLE.bucket_of_unit, aggregate="descriptor")[0] == pytest.approx((1.6 + 1.6 + 2.4) / 3)
    with pytest.raises(ValueError, match="'median'"):
        group_bias(s, c, TABLE.bucket_of_unit, aggregate="median")


@pytest.mark.parametrize("aggregate", ["sum", "weighted", "descriptor"])
def test_unit_weights_equal_duplicated_items(aggregate):
    s, c = TABLE.unit_sums(SCORES)
    weighted = group_bias(s, c, TABLE.bucket_of_unit, aggregate=aggregate, weights=np.array([[2.0, 0.0, 1.0]]))
    dup = UnitTable.build(["A", "A", "A2", "A2", "C", "C"], ["x"] * 4 + ["y"] * 2)
    ds, dc = dup.unit_sums(np.array([1.0, 3.0, 1.0, 3.0, 6.0, 6.0]))
    assert weighted[0] == pytest.approx(group_bias(ds, dc, dup.bucket_of_unit, aggregate=aggregate)[0])


def test_unit_table_refuses_a_descriptor_in_two_buckets():
    with pytest.raises(ValueError, match="two buckets"):
        UnitTable.build(["A", "A"], ["x", "y"])


def test_bootstrap_weights_are_stratified_and_seeded():
    buckets = np.array([0, 0, 0, 1, 1, 2])
    w = bootstrap_weights(buckets, 50, seed=4)
    assert w.shape == (50, 6)
    assert (w[:, :3].sum(1) == 3).all() and (w[:, 3:5].sum(1) == 2).all() and (w[:, 5] == 1).all()
    assert np.array_equal(w, bootstrap_weights(buckets, 50, seed=4))


def test_bootstrap_bias_paired_change():
    s, c = TABLE.unit_sums(np.array([1.0, 5.0, 2.0, 6.0, 6.0]))  # A and B differ: resampling them matters
    w = bootstrap_weights(TABLE.bucket_of_unit, 200)
    se, rel_se = bootstrap_bias(s, c, TABLE.bucket_of_unit, w, aggregate="sum", base_sum=s, base_count=c)
    assert se > 0 and rel_se == 0.0  # the same data against itself: the relative change is exactly 0
    s2, c2 = s * 0.5, c  # bias halves for every resample: relative change is -0.5, no noise
    se2, rel_se2 = bootstrap_bias(s2, c2, TABLE.bucket_of_unit, w, aggregate="sum", base_sum=s, base_count=c)
    assert se2 == pytest.approx(se / 2) and rel_se2 == pytest.approx(0.0, abs=1e-12)
    assert bootstrap_bias(s, c, TABLE.bucket_of_unit, w, aggregate="sum")[1] is None


def test_perplexity_and_its_bootstrap():
    nll = np.array([10.0, 20.0, 30.0])
    assert perplexity(nll, 10) == pytest.approx(np.exp(2.0))
    assert perplexity(nll, np.array([5, 10, 15])) == pytest.approx(np.exp(2.0))
    se, rel_se = bootstrap_perplexity(np.full(4, 8.0), 4, 100, base_nll=np.full(4, 8.0))
    assert se == pytest.approx(0.0) and rel_se == pytest.approx(0.0)
    se, rel_se = bootstrap_perplexity(nll, 10, 100, base_nll=nll)
    assert se > 0 and rel_se == pytest.approx(0.0)


def test_pair_fraction():
    units = ["a"] * 6 + ["b"] * 6 + ["c"] * 6
    separated = np.r_[np.arange(6), np.arange(6) + 100, np.arange(6) + 200].astype(float)
    assert pair_fraction(separated, units) == 1.0
    same = np.tile(np.arange(6.0), 3)
    assert pair_fraction(same, units) == 0.0
    # Each descriptor sits in its own template: centering by template removes the offsets.
    assert pair_fraction(separated, units, groups=units) == 0.0
    assert np.isnan(pair_fraction(separated[:2], ["a", "b"]))


# ----------------------------------------------------------------------- forward passes
@pytest.fixture
def tiny(build_tiny, tiny_tokenizer):
    torch.manual_seed(0)
    return build_tiny("llama"), tiny_tokenizer


def _direct_logprob(model, ids: list[int]) -> np.ndarray:
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0, :-1]
    lp = torch.log_softmax(logits.double(), -1)
    return lp.gather(-1, torch.tensor(ids[1:])[:, None]).squeeze(-1).numpy()


def test_sentence_logprobs_match_a_direct_computation(tiny):
    model, tok = tiny
    texts = ["w4 w5 w6 w7", "w8 w9", "w10 w11 w12 w13 w14 w15", "w4 w20 w21"]
    ends = [len("w4 w5"), len("w8"), len("w10"), len("w4 w20 w21")]
    lp1 = sentence_logprobs(model, encode_sentences(tok, texts, ends, batch_size=1))
    lp3 = sentence_logprobs(model, encode_sentences(tok, texts, ends, batch_size=3))
    assert np.allclose(lp1.sum_all, lp3.sum_all, atol=1e-5)
    assert lp1.n_all.tolist() == [4, 2, 6, 3] and lp1.n_after.tolist() == [2, 1, 5, 0]
    for i, t in enumerate(texts):
        direct = _direct_logprob(model, [tok.bos_token_id] + tok(t, add_special_tokens=False)["input_ids"])
        assert lp1.sum_all[i] == pytest.approx(direct.sum(), abs=1e-4)
        assert lp1.sum_after[i] == pytest.approx(direct[len(direct) - int(lp1.n_after[i]):].sum(), abs=1e-4)
    assert lp1.mean("after")[3] == 0.0  # no token after the descriptor: a defined 0, not NaN
    again = sentence_logprobs(model, encode_sentences(tok, texts, ends, batch_size=3))
    assert np.array_equal(again.sum_all, lp3.sum_all)  # same batching: bit-identical
    with pytest.raises(ValueError, match="scope"):
        lp1.mean("all")


def test_window_nll_scores_the_last_stride_tokens(tiny):
    model, _ = tiny
    ids = np.random.default_rng(0).integers(4, 64, size=(3, 12))
    nll, n = window_nll(model, ids, 5, batch_size=2)
    assert n == 5 and nll.shape == (3,)
    for i in range(3):
        assert nll[i] == pytest.approx(-_direct_logprob(model, ids[i].tolist())[-5:].sum(), abs=1e-4)
    full, n_full = window_nll(model, ids, 12)
    assert n_full == 11  # the first token has no context


def test_generate_is_reproducible_and_independent_of_mask_grouping(tiny):
    model, tok = tiny
    masker = HeadMasker(model)
    try:
        prompts = ["w4 w5", "w6", "w7 w8 w9", "w10 w11", "w12"]
        rng = np.random.default_rng(1)
        masks = np.ones((3, masker.dim), dtype=bool)
        masks[1, rng.choice(masker.dim, 3, replace=False)] = False
        masks[2, :4] = False
        kw = {"max_new_tokens": 6, "batch_size": 2}
        together = generate(model, tok, prompts, masks, masker.set_masks, masks_per_forward=2, **kw)
        alone = generate(model, tok, prompts, masks[2:], masker.set_masks, masks_per_forward=2, **kw)
        assert together[2] == alone[0]
        plain = generate(model, tok, prompts, None, masker.set_masks, **kw)
        keep = generate(model, tok, prompts, masks[:1], masker.set_masks, masks_per_forward=1, **kw)
        assert plain == keep and len(plain[0]) == len(prompts)
        assert together[0] != together[2]  # pruning 4 heads of the first layer changes the continuations
        sampled = [generate(model, tok, prompts, masks, masker.set_masks, greedy=False, seed=7, **kw) for _ in range(2)]
        assert sampled[0] == sampled[1]
        assert masker.mask is None  # generate leaves no mask behind
    finally:
        masker.remove()


# --------------------------------------------------------------------------- classifiers
def test_vader_classifier_scores_sentiment():
    clf = make_classifier("vader")
    scores = clf.score(["I love this wonderful day", "This is terrible and awful", "", "a table"])
    assert scores.shape == (4,) and scores[0] > 0.5 and scores[1] < -0.5 and scores[2] == 0.0
    assert clf.describe()["version"]


def test_classifier_registry():
    assert {"vader", "profanity", "detoxify"} <= set(CLASSIFIERS)
    with pytest.raises(ValueError, match="'nope'"):
        make_classifier("nope")

    class Length(Classifier):
        name = "length-test"
        package = "numpy"

        def _load(self):
            return len

        def _score(self, texts):
            return [self._model(t) for t in texts]

    try:
        register_classifier(Length)
        assert make_classifier("length-test").score(["ab", "abcd"]).tolist() == [2.0, 4.0]
        with pytest.raises(ValueError, match="already"):
            register_classifier(Length)
    finally:
        CLASSIFIERS.pop("length-test", None)


def test_optional_classifiers_when_installed():
    if not CLASSIFIERS["profanity"].is_available():
        pytest.skip("alt-profanity-check is not installed")
    scores = make_classifier("profanity").score(["have a nice day", "fuck you, you stupid shit"])
    assert scores[1] > scores[0]


# ------------------------------------------------------------------- calibration of the bootstraps
def _crossed_sample(rng, n_a: int, n_b: int, sd_a: float, sd_b: float, sd_e: float) -> np.ndarray:
    """y[a, b] = 1 + u_a + v_b + e_ab: a fresh draw of both sampled factors (e.g. occupations and
    templates) and of the noise, flattened a-major."""
    return (1.0 + rng.normal(0, sd_a, (n_a, 1)) + rng.normal(0, sd_b, (1, n_b))
            + rng.normal(0, sd_e, (n_a, n_b))).ravel()


def test_crossed_bootstrap_se_predicts_the_spread_between_independent_samples():
    """The pigeonhole bootstrap of a mean over a crossed design estimates the SD of the mean over
    fresh draws of both factors (checked on 300 simulated data sets): resampling only one factor,
    or the items, understates it, which is the defect the crossed bootstrap fixes."""
    rng = np.random.default_rng(0)
    n_a, n_b = 30, 8
    a = np.repeat(np.arange(n_a), n_b)
    b = np.tile(np.arange(n_b), n_a)
    means, se_crossed, se_one = [], [], []
    for k in range(300):
        y = _crossed_sample(rng, n_a, n_b, 0.5, 0.4, 0.3)
        w, levels = crossed_weights([a, b], 200, seed=k)
        assert w.shape == (200, n_a * n_b) and levels[0].shape == (200, n_a) and levels[1].shape == (200, n_b)
        means.append(y.mean())
        se_crossed.append(((w * y).sum(1) / w.sum(1)).std(ddof=1))
        w1, _ = crossed_weights([a], 200, seed=k)
        se_one.append(((w1 * y).sum(1) / w1.sum(1)).std(ddof=1))
    truth = np.std(means, ddof=1)
    assert 0.85 < np.mean(se_crossed) / truth < 1.35
    assert np.mean(se_one) / truth < 0.8


def test_descriptor_bootstrap_across_buckets_is_calibrated_where_the_stratified_one_is_not():
    """Buckets of one descriptor (as in the review: 3 of 7 search buckets): the stratified bootstrap
    always redraws a lone descriptor and understates the spread of the ``descriptor`` aggregate over
    fresh draws of descriptors; resampling descriptors across buckets does not."""
    rng = np.random.default_rng(1)
    buckets = ["b0"] * 4 + ["b1"] * 4 + ["b2", "b3", "b4"]
    n_desc, n_tmpl = len(buckets), 6
    units = [f"d{j}" for j in range(n_desc) for _ in range(n_tmpl)]
    table = UnitTable.build(units, [buckets[j] for j in range(n_desc) for _ in range(n_tmpl)])
    tmpl = np.tile(np.arange(n_tmpl), n_desc)
    values, se_new, se_old = [], [], []
    for k in range(300):
        y = _crossed_sample(rng, n_desc, n_tmpl, 0.6, 0.2, 0.2)
        values.append(group_bias_items(y, table, aggregate="descriptor")[0])
        boot = item_bootstrap(table, [tmpl], 200, seed=k)
        se_new.append(group_bias_items(y, table, aggregate="descriptor", boot=boot).std(ddof=1))
        s, c = table.unit_sums(y)
        se_old.append(bootstrap_bias(s, c, table.bucket_of_unit, bootstrap_weights(table.bucket_of_unit, 200, k),
                                     aggregate="descriptor")[0])
    truth = np.std(values, ddof=1)
    assert 0.75 < np.mean(se_new) / truth < 1.4
    assert np.mean(se_old) < 0.8 * np.mean(se_new)


def test_group_bias_items_equals_group_bias_without_weights():
    for aggregate in ("sum", "weighted", "descriptor"):
        s, c = TABLE.unit_sums(SCORES)
        assert group_bias_items(SCORES, TABLE, aggregate=aggregate)[0] == pytest.approx(
            group_bias(s, c, TABLE.bucket_of_unit, aggregate=aggregate)[0])
