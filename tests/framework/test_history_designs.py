"""The told-data buffer (History) and the initial / fill-in designs."""

from __future__ import annotations

import numpy as np
import pytest

from framework.designs import fill_new, initial_design, knockouts, kv_group_knockouts, random_design
from framework.history import History, pack_mask, unpack_mask
from framework.space import HeadSpace

GQA = HeadSpace(6, 6, 2, max_pruned_fraction=0.3, protected=frozenset({0, 7, 20}))  # 36 heads, KV groups of 3
BINARY = HeadSpace.binary(30, max_pruned_fraction=0.4, protected={3})


def masks_of(*pruned_sets, d=6):
    out = np.ones((len(pruned_sets), d), dtype=bool)
    for i, s in enumerate(pruned_sets):
        out[i, list(s)] = False
    return out


# ------------------------------------------------------------------ History
def test_pack_mask_round_trips():
    rng = np.random.default_rng(0)
    for d in (1, 7, 8, 13, 36):
        m = rng.random(d) < 0.5
        np.testing.assert_array_equal(unpack_mask(pack_mask(m), d), m)


def test_history_keeps_the_first_value_of_a_mask():
    h = History(6, 2)
    X = masks_of((), (1,), (2, 3))
    assert h.add(X, np.array([[1.0, 1.0], [2.0, 0.5], [0.5, 2.0]])) == [True, True, True]
    assert h.add(masks_of((1,), (4,), (4,)), np.array([[9.0, 9.0], [3.0, 3.0], [7.0, 7.0]])) == [False, True, False]
    assert len(h) == 4
    np.testing.assert_array_equal(h.value(X[1]), [2.0, 0.5])
    np.testing.assert_array_equal(h.value(masks_of((4,))[0]), [3.0, 3.0])
    assert h.index(X[2]) == 2 and h.index(masks_of((5,))[0]) is None and h.value(masks_of((5,))[0]) is None
    np.testing.assert_array_equal(h.masks[:3], X)
    assert X[0] in h and pack_mask(X[0]) in h and masks_of((5,))[0] not in h


def test_is_new_checks_extra_key_sets():
    h = History(6, 2)
    h.add(masks_of(()), np.zeros((1, 2)))
    a, b = masks_of((1,), (2,))
    assert not h.is_new(masks_of(())[0])
    assert h.is_new(a) and h.is_new(pack_mask(a))
    assert not h.is_new(a, {pack_mask(a)})
    assert not h.is_new(b, set(), {pack_mask(b)})
    assert h.is_new(b, {pack_mask(a)})
    keys = h.keys()
    keys.add(pack_mask(a))  # a copy: the history is unchanged
    assert h.is_new(a)


def test_front_and_normalized_skip_failed_rows():
    h = History(6, 2, normalize=lambda y: y / 10.0)
    h.add(masks_of((), (1,), (2,), (3,)), np.array([[1.0, 5.0], [np.nan, np.nan], [5.0, 1.0], [6.0, 6.0]]))
    h.add(masks_of((4,)), np.array([[0.0, np.nan]]))
    np.testing.assert_array_equal(h.finite(), [True, False, True, True, False])
    assert h.n_finite() == 3
    X, Y = h.normalized()
    np.testing.assert_allclose(Y, [[0.1, 0.5], [0.5, 0.1], [0.6, 0.6]])
    np.testing.assert_array_equal(X, masks_of((), (2,), (3,)))
    FX, FY = h.front()
    np.testing.assert_allclose(FY, [[0.1, 0.5], [0.5, 0.1]])
    np.testing.assert_array_equal(FX, masks_of((), (2,)))
    empty = History(6, 2)
    assert empty.front()[1].shape == (0, 2) and empty.normalized()[0].shape == (0, 6)
    assert empty.finite().shape == (0,)


# ------------------------------------------------------------------ designs
@pytest.mark.parametrize("space", [GQA, BINARY], ids=["gqa", "binary"])
def test_initial_design_is_distinct_valid_unpruned_first_with_knockouts(space):
    n = 21
    X = initial_design(space, n, np.random.default_rng(0), knockout_fraction=0.4, group_fraction=0.1)
    assert X.shape == (n, space.dim) and X.dtype == bool
    assert X[0].all()
    assert space.is_valid(X).all()
    assert len({pack_mask(x) for x in X}) == n
    n_pruned = (~X).sum(axis=1)
    singles = X[1:1 + 8]  # round(0.4 * 20) single-head knock-outs right after the unpruned mask
    assert ((~singles).sum(axis=1) == 1).all()
    assert len({int(np.flatnonzero(~x)[0]) for x in singles}) == 8
    if space.structured:
        groups = X[9:11]  # round(0.1 * 20) whole-KV-group knock-outs
        for g in groups:
            heads = np.flatnonzero(~g)
            assert len(set(space.kv_group_of[heads].tolist())) == 1 and heads.size > 1
    assert (n_pruned[1:] >= 1).all()


def test_initial_design_pruned_counts_log_uniform_or_mixed():
    """log: most random masks prune few heads; uniform: every count up to the limit alike (the
    median near half the limit); mixed: each in turn, so between the two."""
    space = HeadSpace.binary(400, max_pruned_fraction=0.5)
    med = {}
    for counts in ("log", "uniform", "mixed"):
        X = initial_design(space, 301, np.random.default_rng(1), knockout_fraction=0.0, group_fraction=0.0,
                           initial_max_ratio=0.5, pruned_counts=counts)
        pruned = (~X[1:]).sum(axis=1)
        assert space.is_valid(X).all() and pruned.min() >= 1 and pruned.max() <= 200
        med[counts] = float(np.median(pruned))
    assert med["log"] < 25 and 80 < med["uniform"] < 120 and med["log"] < med["mixed"] < med["uniform"]
    with pytest.raises(ValueError, match="pruned_counts"):
        initial_design(space, 5, np.random.default_rng(0), pruned_counts="normal")


def test_initial_design_follows_head_weights_and_tiny_spaces():
    w = np.linspace(1.0, 2.0, 30)
    X = initial_design(BINARY, 11, np.random.default_rng(0), knockout_fraction=0.5, head_weights=w)
    knocked = [int(np.flatnonzero(~x)[0]) for x in X[1:6]]
    assert knocked == [29, 28, 27, 26, 25]  # heaviest first (head 3 is protected anyway)
    tiny = HeadSpace.binary(3, max_pruned_fraction=1.0)
    assert initial_design(tiny, 1, np.random.default_rng(0)).shape == (1, 3)
    assert initial_design(HeadSpace.binary(3, protected={0, 1, 2}), 4, np.random.default_rng(0)).shape == (1, 3)


def test_knockouts_and_group_knockouts():
    K = knockouts(GQA, np.array([2, 5]))
    assert K.shape == (2, 36) and (~K).sum() == 2 and not K[0, 2] and not K[1, 5]
    groups = kv_group_knockouts(GQA)
    assert groups and all(g.size > 1 and len(set(GQA.kv_group_of[g].tolist())) == 1 for g in groups)
    assert all(not GQA.protected_mask[g].any() for g in groups)
    assert kv_group_knockouts(BINARY) == []


def test_random_design_excludes_given_keys():
    rng = np.random.default_rng(0)
    first = random_design(BINARY, 10, rng)
    assert first[0].all() and BINARY.is_valid(first).all()
    exclude = {pack_mask(x) for x in first}
    second = random_design(BINARY, 10, rng, exclude=exclude)
    keys = [pack_mask(x) for x in second]
    assert not set(keys) & exclude and len(set(keys)) == 10
    assert BINARY.is_valid(second).all()
    no_keep = random_design(BINARY, 3, rng, include_keep_all=False, max_ratio=0.1)
    assert not no_keep.all(axis=1).any() and ((~no_keep).sum(axis=1) <= 3).all()


@pytest.mark.parametrize("with_perturb", [False, True])
def test_fill_new_gives_n_new_valid_masks(with_perturb):
    rng = np.random.default_rng(0)
    told = initial_design(GQA, 12, rng)
    exclude = {pack_mask(x) for x in told}

    def perturb(x):
        y = x.copy()
        rows = np.arange(len(y))
        heads = rng.integers(GQA.dim, size=len(y))
        y[rows, heads] ^= True
        return GQA.repair(y, rng)

    out = fill_new(GQA, 15, rng, exclude, bases=told[:3], perturb=perturb if with_perturb else None)
    assert len(out) == 15
    keys = [pack_mask(x) for x in out]
    assert len(set(keys)) == 15 and not set(keys) & exclude
    assert GQA.is_valid(np.array(out)).all()
    assert fill_new(GQA, 0, rng, exclude, bases=told) == []
    assert len(fill_new(GQA, 2, rng, set(), bases=np.zeros((0, GQA.dim), dtype=bool))) == 2
