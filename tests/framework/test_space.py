"""HeadSpace: conversions, constraints, topology."""

from __future__ import annotations

import numpy as np
import pytest

from framework.space import HeadSpace


def test_flat_grid_roundtrip_and_layer_major_order():
    s = HeadSpace(3, 4, 2)
    rng = np.random.default_rng(0)
    m = rng.random((5, 12)) < 0.5
    g = s.to_grid(m)
    assert g.shape == (5, 3, 4) and g.dtype == bool
    assert np.array_equal(s.to_flat(g), m)
    assert g[1, 2, 3] == m[1, 2 * 4 + 3]
    with pytest.raises(ValueError, match=r"\[n, 12\]"):
        s.to_grid(np.ones((2, 11), dtype=bool))
    with pytest.raises(ValueError, match="boolean or 0/1"):
        s.to_grid(np.full((1, 12), 2))


def test_kv_groups_and_graph():
    s = HeadSpace(2, 6, 2)
    assert s.group_size == 3
    assert s.kv_group_of.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert s.neighbours(0, "kv").tolist() == [1, 2]
    assert s.neighbours(0, "layer").tolist() == [3, 4, 5]
    assert s.graph.number_of_nodes() == 12 and s.graph.nodes[7]["layer"] == 1
    b = HeadSpace.binary(10)
    assert b.dim == 10 and b.graph.number_of_edges() == 0
    with pytest.raises(ValueError, match="multiple"):
        HeadSpace(2, 6, 4)


def test_constraints_sample_and_repair():
    s = HeadSpace(4, 5, max_pruned_fraction=0.2, protected=frozenset({0, 7}))
    assert s.max_pruned == 4
    rng = np.random.default_rng(1)
    m = s.sample(200, rng)
    assert m.dtype == bool and s.is_valid(m).all()
    assert m[:, [0, 7]].all() and ((~m).sum(1) >= 1).all()
    bad = np.zeros((3, 20), dtype=bool)
    assert not s.is_valid(bad).any()
    fixed = s.repair(bad, rng)
    assert s.is_valid(fixed).all() and ((~fixed).sum(1) == 4).all()
    low = s.sample(200, rng, max_ratio=0.05)
    assert ((~low).sum(1) <= 1).all()


def test_mask_file_formats_and_errors(tmp_path):
    import json

    from framework.space import read_mask_file

    s = HeadSpace(2, 3)
    f = tmp_path / "m.json"
    f.write_text(json.dumps([1, 0, 1, 1, 1, 0]))
    flat = read_mask_file(str(f), s)
    assert flat.dtype == bool and flat.tolist() == [True, False, True, True, True, False]
    f.write_text(json.dumps([[1, 0, 1], [1, 1, 0]]))
    assert np.array_equal(read_mask_file(str(f), s), flat)
    f.write_text(json.dumps({"layers": 2, "mask": [[1, 0, 1], [1, 1, 0]]}))
    assert np.array_equal(read_mask_file(str(f), s), flat)
    for bad, msg in (([1, 0, 1], "holds 3 values"), ([[1, 0], [1, 1]], "lists of lengths"),
                     ([1, 0, 2, 1, 1, 0], "0/1")):
        f.write_text(json.dumps(bad))
        with pytest.raises(ValueError, match=msg):
            read_mask_file(str(f), s)
