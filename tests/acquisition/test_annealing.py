"""The batched simulated-annealing engine: moves keep the constraints, schedules cool as
documented, and annealing finds known optima of energies with a cardinality constraint."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from acquisition.annealing import (
    MOVES,
    AnnealSchedule,
    HeadMoves,
    MoveWeights,
    SimulatedAnnealing,
    temperature_schedule,
)
from framework.space import HeadSpace


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


GQA = HeadSpace(6, 6, 2, max_pruned_fraction=0.3, protected=frozenset({0, 7, 20}))
BINARY = HeadSpace.binary(30, max_pruned_fraction=0.4, protected={3})


@pytest.mark.parametrize("space", [GQA, BINARY, HeadSpace(3, 4, None)], ids=["gqa", "binary", "mha"])
def test_every_move_keeps_the_constraints(space):
    moves = HeadMoves(space)
    g = gen()
    x = torch.ones(48, space.dim, dtype=torch.bool)
    for step in range(400):
        move = moves.active[step % len(moves.active)]
        prop, moved = moves.propose(x, g, move)
        assert space.is_valid(prop.numpy()).all(), move
        assert torch.equal(prop[~moved], x[~moved])
        assert ((prop != x).sum(dim=1)[moved] >= 1).all()
        x = prop
    if space.max_pruned < space.dim // 2:  # random walks reach the limit and stay within it
        assert (~x).sum(dim=1).max() == space.max_pruned


def test_structure_aware_moves_follow_the_graph():
    space = HeadSpace(4, 6, 2)  # KV groups of 3 heads, 2 groups per layer
    moves = HeadMoves(space)
    assert set(moves.active) == set(MOVES)
    g = gen(1)
    rng = np.random.default_rng(0)
    x = torch.as_tensor(space.sample(200, rng, max_ratio=0.4))
    for move in ("swap", "kv_swap", "layer_swap"):
        prop, moved = moves.propose(x, g, move)
        changed = prop != x
        two = changed.sum(dim=1) == 2  # the swap itself (rows where it was infeasible flip instead)
        assert two.sum() > 100
        assert torch.equal((~prop).sum(dim=1)[two], (~x).sum(dim=1)[two])  # pruned count kept
        for row in torch.nonzero(two).flatten().tolist():
            a, b = torch.nonzero(changed[row]).flatten().tolist()
            if move == "kv_swap":
                assert b in space.neighbours(a, "kv")
            elif move == "layer_swap":
                assert b in space.neighbours(a, "layer")
    prop, moved = moves.propose(x, g, "group")
    for row in range(len(x)):
        heads = torch.nonzero(prop[row] != x[row]).flatten().numpy()
        groups = set(space.kv_group_of[heads].tolist())
        assert len(groups) == 1  # one KV group toggled
        members = np.flatnonzero(space.kv_group_of == groups.pop())
        assert len(set(prop[row, members].tolist())) == 1  # ... to all kept or all pruned


def test_binary_spaces_use_flip_and_swap_only():
    assert HeadMoves(BINARY).active == ("flip", "swap")
    assert HeadMoves(GQA, {"swap": 0, "group": 0}).active == ("flip", "kv_swap", "layer_swap")
    with pytest.raises(ValueError, match="unknown move"):
        MoveWeights.from_value({"jump": 1.0})
    with pytest.raises(ValueError, match="kv_swap must be"):
        MoveWeights(kv_swap=-1.0)
    with pytest.raises(ValueError, match="not active"):
        HeadMoves(BINARY).propose(torch.ones(2, 30, dtype=torch.bool), gen(), "group")


def test_no_feasible_move_leaves_the_state_unchanged():
    space = HeadSpace.binary(4, protected={0, 1, 2, 3})
    prop, moved = HeadMoves(space).propose(torch.ones(3, 4, dtype=torch.bool), gen())
    assert not moved.any() and prop.all()


@pytest.mark.parametrize("cooling", ["geometric", "logarithmic"])
def test_schedules_cool_from_t0_to_the_final_ratio(cooling):
    t0 = torch.tensor([1.0, 4.0])
    temps = temperature_schedule(t0, 200, cooling=cooling, final_ratio=1e-2)
    assert temps.shape == (200, 2)
    assert torch.allclose(temps[0], t0) and torch.allclose(temps[-1], t0 * 1e-2, rtol=1e-4)
    assert (temps[1:] < temps[:-1]).all()
    geo = temperature_schedule(t0, 200, cooling="geometric", final_ratio=1e-2)
    if cooling == "logarithmic":  # drops faster at first, lingers cold longer
        assert temps[10, 0] < geo[10, 0] and temps[100, 0] < 2 * temps[-1, 0] < geo[100, 0]
    with pytest.raises(ValueError, match="cooling"):
        temperature_schedule(t0, 10, cooling="linear")


def linear_problem(seed: int = 0, d: int = 40):
    """Energy = sum of the weights of kept heads; optimum: prune the most positive free weights."""
    space = HeadSpace(5, d // 5, 1 if d % 5 == 0 else None, max_pruned_fraction=0.2, protected=frozenset({1, 2}))
    w = torch.as_tensor(np.random.default_rng(seed).normal(size=d), dtype=torch.float32)
    free = torch.as_tensor(~space.protected_mask)
    top = torch.where(free, w, torch.tensor(-math.inf)).sort(descending=True).values[:space.max_pruned]
    optimum = float(w.sum() - top.clamp(min=0).sum())
    return space, w, optimum


@pytest.mark.parametrize("cooling", ["geometric", "logarithmic"])
def test_annealing_finds_the_optimum_of_a_constrained_linear_energy(cooling):
    space, w, optimum = linear_problem()
    sa = SimulatedAnnealing(space, AnnealSchedule(n_steps=600, cooling=cooling))
    result = sa.run(lambda x, chain: x @ w, torch.ones(16, space.dim, dtype=torch.bool), gen())
    assert space.is_valid(result.best_x.numpy()).all() and space.is_valid(result.pool().numpy()).all()
    assert torch.allclose(result.best_energy, (result.best_x.float() @ w), atol=1e-4)
    assert result.best_energy.min() == pytest.approx(optimum, abs=1e-4)
    assert (result.best_energy <= optimum + 0.5).float().mean() >= 0.75
    assert result.snapshots.shape == (8, 16, space.dim)
    assert result.n_energy_calls == 600 + 2


def test_each_chain_follows_its_own_energy():
    space, w, optimum = linear_problem(1)
    sign = torch.tensor([1.0, -1.0]).repeat(4)  # even chains minimize, odd chains maximize

    def energy(x, chain):
        return sign[chain] * (x @ w)

    sa = SimulatedAnnealing(space, AnnealSchedule(n_steps=400))
    result = sa.run(energy, torch.ones(8, space.dim, dtype=torch.bool), gen())
    kept_sum = result.best_x.float() @ w
    assert (kept_sum[0::2] < kept_sum[1::2]).all()


def test_initial_temperature_follows_the_target_acceptance():
    space, w, _ = linear_problem(2)
    x0 = torch.ones(32, space.dim, dtype=torch.bool)

    def energy(x, chain):
        return x @ w

    low = SimulatedAnnealing(space, AnnealSchedule(initial_acceptance=0.2))
    t_low = low.initial_temperature(energy, x0, energy(x0.float(), None), gen())
    high = SimulatedAnnealing(space, AnnealSchedule(initial_acceptance=0.8))
    t_high = high.initial_temperature(energy, x0, energy(x0.float(), None), gen())
    assert (t_low > 0).all() and (t_high > t_low).all()
    # Kirkpatrick's rule: exp(-mean uphill delta / T0) = chi0, so T0 scales with the energy
    t_scaled = SimulatedAnnealing(space, AnnealSchedule(initial_acceptance=0.2)).initial_temperature(
        lambda x, chain: 10 * (x @ w), x0, 10 * energy(x0.float(), None), gen())
    assert torch.allclose(t_scaled, 10 * t_low, rtol=1e-4)


def test_annealing_is_deterministic_and_honours_the_trust_region():
    space, w, _ = linear_problem(3)
    sa = SimulatedAnnealing(space, AnnealSchedule(n_steps=200))
    rng = np.random.default_rng(0)
    x0 = torch.as_tensor(space.sample(12, rng, max_ratio=0.1))

    def energy(x, chain):
        return x @ w

    a, b = sa.run(energy, x0, gen(5), max_distance=3), sa.run(energy, x0, gen(5), max_distance=3)
    assert torch.equal(a.best_x, b.best_x) and torch.equal(a.final_x, b.final_x)
    for states in (a.best_x, a.final_x, *a.snapshots):
        assert ((states != x0).sum(dim=1) <= 3).all()
    free = sa.run(energy, x0, gen(5))
    assert ((free.best_x != x0).sum(dim=1) > 3).any()


def test_invalid_inputs_are_refused():
    space, w, _ = linear_problem()
    sa = SimulatedAnnealing(space, AnnealSchedule(n_steps=5))
    bad = torch.ones(2, space.dim, dtype=torch.bool)
    bad[0, 1] = False  # a protected head
    with pytest.raises(ValueError, match="break the space's constraints"):
        sa.run(lambda x, chain: x @ w, bad, gen())
    with pytest.raises(ValueError, match="expected \\[2\\]"):
        sa.run(lambda x, chain: (x @ w)[:1], torch.ones(2, space.dim, dtype=torch.bool), gen())
    for kwargs, match in (({"n_steps": 0}, "n_steps"), ({"cooling": "fast"}, "cooling"),
                          ({"initial_acceptance": 1.0}, "initial_acceptance"),
                          ({"final_temperature_ratio": 0.0}, "final_temperature_ratio")):
        with pytest.raises(ValueError, match=match):
            AnnealSchedule(**kwargs)
