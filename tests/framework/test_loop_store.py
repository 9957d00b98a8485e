"""Loop and store: exact budgets, valid masks, caching, durable evaluations, resume after SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from framework.config import RunConfig
from framework.history import pack_mask, unpack_mask
from framework.loop import StrategyStalled, optimize
from framework.registry import PROBLEMS, STRATEGIES
from framework.store import EvaluationStore
from framework.strategy import Strategy


def _problem(**kw):
    return PROBLEMS.create("rho-mnk", n_bits=kw.pop("n_bits", 24), k=2, seed=3, **kw)


@pytest.mark.parametrize("batch_size", [1, 3, 7, 50])
def test_budget_exact_and_masks_valid(batch_size):
    problem = _problem(max_pruned_fraction=0.25, protected=(0, 5))
    seen = []

    class Spy(Strategy):
        def ask(self, n):
            seen.append(n)
            return self.problem.space.sample(n, self.rng)

        def tell(self, masks, values):
            assert np.all(np.isfinite(values))

    res = optimize(problem, Spy(), 23, batch_size=batch_size, seed=1)
    assert res.n_evaluations == 23 and len(res.hv_curve) == 23
    assert max(seen) <= batch_size and sum(seen) >= 23
    assert problem.space.is_valid(res.masks).all()
    assert res.masks.dtype == bool
    assert len({pack_mask(m) for m in res.masks}) == 23  # distinct: each counted once
    assert np.all(np.diff(res.hv_curve) >= -1e-12)


def test_invalid_masks_rejected():
    problem = _problem(max_pruned_fraction=0.1)

    class Greedy(Strategy):
        def ask(self, n):
            return np.zeros((n, self.problem.space.dim), dtype=bool)

        def tell(self, masks, values):
            pass

    with pytest.raises(ValueError, match="constraints"):
        optimize(problem, Greedy(), 5)


def test_options_that_cannot_be_recorded_fail_before_anything_is_paid():
    problem = _problem()
    paid = []
    problem_evaluate = problem.evaluate_with_info
    problem.evaluate_with_info = lambda masks, split: paid.append(len(masks)) or problem_evaluate(masks, split)

    class Forgetful(Strategy):
        def __init__(self, width: int = 3) -> None:   # keeps no attribute "width"
            self._w = width

        def ask(self, n):
            return self.problem.space.sample(n, self.rng)

        def tell(self, masks, values):
            pass

    with pytest.raises(AttributeError, match="'width'"):
        optimize(problem, Forgetful(), 5)
    assert paid == []


def test_repeated_masks_not_charged_and_stall_detected():
    problem = _problem()

    class Stuck(Strategy):
        def ask(self, n):
            return self.problem.space.keep_all(n)

        def tell(self, masks, values):
            self.last = values

    s = Stuck()
    res = optimize(problem, s, 10, batch_size=2, max_stall=5)
    assert res.n_evaluations == 1 and res.stop_reason.startswith("stalled")
    assert np.allclose(s.last[0], s.last[1])  # duplicates in one ask answered alike
    assert issubclass(StrategyStalled, RuntimeError)


def test_store_roundtrip_and_cache_hits(tmp_path):
    rng = np.random.default_rng(0)
    m = rng.random((4, 13)) < 0.5
    assert np.array_equal(unpack_mask(pack_mask(m[0]), 13), m[0])
    problem = _problem()
    with EvaluationStore(tmp_path / "e.sqlite") as store:
        a = optimize(problem, STRATEGIES.create("random"), 15, batch_size=4, seed=5, store=store)
        assert a.n_cache_hits == 0 and store.count(problem.fingerprint()) == 15
        b = optimize(problem, STRATEGIES.create("random"), 20, batch_size=4, seed=5, store=store)
        # same seed: the first 15 masks (ask order is the same) come from the store
        assert b.n_evaluations == 20 and b.n_cache_hits >= 12 and store.count(problem.fingerprint()) <= 23
        ev = store.all(problem.fingerprint())[0]
        assert ev.status == "ok" and ev.strategy == "random" and ev.seed == 5 and ev.wall_time >= 0
    other = PROBLEMS.create("rho-mnk", n_bits=24, k=2, seed=4)
    assert other.fingerprint() != problem.fingerprint()


def test_evaluation_cost_does_not_depend_on_who_paid_first(tmp_path):
    """A second run served entirely by the store pays nothing now but is charged what its
    evaluations cost when they were paid, so benchmark time columns do not depend on cell order."""
    problem = _problem()
    with EvaluationStore(tmp_path / "s.sqlite") as store:
        first = optimize(problem, STRATEGIES.create("random"), 12, batch_size=4, seed=3, store=store)
        again = optimize(problem, STRATEGIES.create("random"), 12, batch_size=4, seed=3, store=store)
    assert first.n_cache_hits == 0 and again.n_cache_hits == 12 and again.evaluation_time == 0.0
    assert first.evaluation_cost > 0 and again.evaluation_cost == pytest.approx(first.evaluation_cost, rel=1e-9)


def test_failed_evaluations_stored_with_reason(tmp_path):
    from framework.problem import Problem
    from framework.space import HeadSpace

    class Flaky(Problem):
        name = "flaky"

        def __init__(self):
            self.space = HeadSpace.binary(8)
            self.objective_names = ("a", "b")
            self.ref_point = np.array([9.0, 9.0])
            self.bounds = np.array([[0.0, 0.0], [8.0, 8.0]])

        def _evaluate(self, masks, split):
            y = np.stack([masks.sum(1), (~masks).sum(1)], 1).astype(float)
            y[masks[:, 0] == 0] = np.nan
            return y

        def describe(self):
            return {}

    with EvaluationStore(tmp_path / "f.sqlite") as store:
        res = optimize(Flaky(), STRATEGIES.create("random"), 30, batch_size=5, store=store)
        rows = store.all(Flaky().fingerprint())
    failed = [r for r in rows if r.status == "failed"]
    assert failed and all(r.reason == "non-finite objective: a=nan, b=nan" and not r.mask[0] for r in failed)
    assert res.n_evaluations == 30 and np.isfinite(res.hypervolume)


KILLER = """
import os, signal, sys
from framework.config import RunConfig
from framework.runs import start_run
cfg = RunConfig(problem="rho-mnk", strategy="random", budget=40, batch_size=3, seed=11, out=sys.argv[1],
                problem_options={"n_bits": 30, "k": 2, "seed": 2}, export=False)
def die(state):
    if state.n_evaluations >= int(sys.argv[2]):
        os.kill(os.getpid(), signal.SIGKILL)
start_run(cfg, progress=False, callbacks=[die])
"""


def test_sigkill_then_resume_matches_uninterrupted(tmp_path):
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    proc = subprocess.run([sys.executable, "-c", KILLER, str(killed), "16"], capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert not (killed / "result.json").exists()
    with EvaluationStore(killed / "evaluations.sqlite") as store:
        committed = store.count()
    assert committed >= 16

    env = dict(os.environ)
    subprocess.run([sys.executable, "-m", "framework.cli", "resume", str(killed), "--quiet"], check=True, env=env,
                   capture_output=True)
    from framework.runs import start_run

    cfg = RunConfig(problem="rho-mnk", strategy="random", budget=40, batch_size=3, seed=11, out=str(clean),
                    problem_options={"n_bits": 30, "k": 2, "seed": 2}, export=False)
    start_run(cfg, progress=False, log=lambda s: None)

    a = json.loads((killed / "result.json").read_text())
    b = json.loads((clean / "result.json").read_text())
    assert a["front"] == b["front"] and a["hv_curve"] == b["hv_curve"] and a["n_evaluations"] == 40
    # every committed evaluation reused, none paid twice; paid by this run, so not a cache hit
    assert a["n_resumed"] == committed and a["n_cache_hits"] == b["n_cache_hits"] == 0
    with EvaluationStore(killed / "evaluations.sqlite") as store:
        assert store.count() == 40  # nothing evaluated twice, nothing lost


def test_resume_refuses_non_run_dir(tmp_path):
    from framework.cli import main

    assert main(["resume", str(tmp_path)]) == 2


def test_split_hypervolume_uses_each_splits_own_baseline():
    from framework.choice import split_hypervolume
    from framework.problem import Problem
    from framework.space import HeadSpace

    class TwoSplits(Problem):
        name = "two-splits"
        splits = ("search", "heldout")

        def __init__(self):
            self.space = HeadSpace.binary(6)
            self.objective_names = ("bias", "perplexity")
            self.ref_point = np.array([1.1, 12.5])
            self.bounds = np.array([[0.0, 10.0], [1.1, 12.5]])

        def baseline(self, split="search"):
            return np.array([1.0, 10.0]) if split == "search" else np.array([2.0, 20.0])

        def _evaluate(self, masks, split):
            pruned = (~masks).sum(1)
            y = np.stack([1.0 - 0.1 * pruned, 10.0 + 0.2 * pruned], 1)
            return y * (1 if split == "search" else 2)

        def describe(self):
            return {}

    p = TwoSplits()
    m = p.space.sample(5, np.random.default_rng(0), max_ratio=0.5)
    from framework.pareto import hypervolume

    hs = split_hypervolume(p, p.evaluate(m), "search")
    assert hs == pytest.approx(hypervolume(p.normalize(p.evaluate(m)), p.normalize(p.ref_point))) and hs > 0
    # the held-out split repairs the model by the same relative amount: same hypervolume
    assert split_hypervolume(p, p.evaluate(m, "heldout"), "heldout") == pytest.approx(hs)


def test_area_beyond_the_ideal_bound_adds_no_hypervolume():
    """A perplexity below the unpruned model's (the ideal bound) counts as the bound itself, in the
    run's curve, in the split hypervolume and through the loop."""
    from framework.choice import split_hypervolume
    from framework.problem import Problem
    from framework.results import run_hypervolume_curve
    from framework.space import HeadSpace

    class BeyondIdeal(Problem):
        name = "beyond-ideal"
        splits = ("search",)

        def __init__(self):
            self.space = HeadSpace.binary(4)
            self.objective_names = ("bias", "perplexity")
            self.ref_point = np.array([1.0, 20.0])
            self.bounds = np.array([[0.0, 10.0], [1.0, 20.0]])

        def _evaluate(self, masks, split):   # pruning head 0 "beats" the unpruned perplexity 10
            return np.where(masks[:, :1], [[0.5, 12.0]], [[0.5, 8.0]]).astype(float)

        def describe(self):
            return {}

    p = BeyondIdeal()
    below, at = np.array([[0.5, 8.0]]), np.array([[0.5, 10.0]])
    assert run_hypervolume_curve(p, below)[-1] == pytest.approx(0.5)          # (1 - 0.5) x (1 - 0)
    assert run_hypervolume_curve(p, below)[-1] == pytest.approx(run_hypervolume_curve(p, at)[-1])
    assert split_hypervolume(p, below, "search") == pytest.approx(split_hypervolume(p, at, "search"))

    class PruneHeadZero(Strategy):
        def ask(self, n):
            m = np.ones((1, 4), dtype=bool)
            m[0, 0] = False
            return m

        def tell(self, masks, values):
            pass

    res = optimize(p, PruneHeadZero(), 1)
    assert res.values[0, 1] == 8.0 and res.hypervolume == pytest.approx(0.5)   # unclipped: 0.5 x 1.2 = 0.6


# --------------------------------------------------------------------- sensitivities
class _SensitivityEveryRound(Strategy):
    """Asks for the sensitivities of a random mask (sometimes a repeat) before each random ask."""

    name = "sens-every-round"

    def _setup(self) -> None:
        self.got = []

    def sensitivity_request(self):
        if len(self.got) > 2 * len(getattr(self, "_asked", [])):
            return None
        return self.problem.space.sample(1, np.random.default_rng(len(self.got) % 3))[0]

    def tell_sensitivities(self, sensitivities) -> None:
        self.got.append(sensitivities)

    def ask(self, n):
        self._asked = [*getattr(self, "_asked", []), 1]
        return self.problem.space.sample(n, self.rng)

    def tell(self, masks, values):
        pass


def test_sensitivity_calls_count_once_per_mask_are_stored_and_resume_free(tmp_path):
    from framework.results import curve_by_budget

    problem = PROBLEMS.create("rho-mnk", n_bits=12, k=1, seed=0, sensitivity_noise=0.3)
    with EvaluationStore(tmp_path / "s.sqlite") as store:
        s = _SensitivityEveryRound()
        res = optimize(problem, s, 12, store=store, run_id="a", seed=4)
        assert res.budget_spent == 12 and res.n_sensitivity_calls == 3  # three distinct masks (seeds 0, 1, 2)
        assert len(s.got) > 3  # repeats were answered from the run's own history, for free
        assert len(res.hv_curve) == 12
        np.testing.assert_array_equal(res.hv_curve, curve_by_budget(res.hv_curve[[i for i in range(12) if i not in
                                                                                     res.sensitivity_spent]],
                                                                    res.sensitivity_spent))
        stored = store.get_sensitivities(problem.fingerprint(), res.sensitivity_masks[0])
        np.testing.assert_array_equal(stored.delta, s.got[0].delta)
        assert [k for k, _, _ in store.sensitivity_trials("a")] == list(res.sensitivity_spent)
        paid = []
        problem_sensitivities = problem.sensitivities
        problem.sensitivities = lambda mask, split: paid.append(mask) or problem_sensitivities(mask, split)
        again = optimize(problem, _SensitivityEveryRound(), 12, store=store, run_id="a", seed=4)
        assert paid == []  # the replay paid nothing
        # ... and what it received was its own (paid before), not a cache hit; another run's are hits
        assert not any(hit for _, _, hit in store.sensitivity_trials("a"))
        np.testing.assert_array_equal(again.sensitivity_masks, res.sensitivity_masks)
        optimize(problem, _SensitivityEveryRound(), 12, store=store, run_id="b", seed=4)
        assert paid == [] and all(hit for _, _, hit in store.sensitivity_trials("b"))


def test_curve_by_budget_repeats_the_hypervolume_at_each_sensitivity_call():
    from framework.results import curve_by_budget

    np.testing.assert_array_equal(curve_by_budget([0.1, 0.2, 0.5], [0, 2]), [0.0, 0.1, 0.1, 0.2, 0.5])
    np.testing.assert_array_equal(curve_by_budget([0.1, 0.2], []), [0.1, 0.2])
    np.testing.assert_array_equal(curve_by_budget([0.3], [1, 2]), [0.3, 0.3, 0.3])


def test_sensitivities_json_round_trip_keeps_nan():
    from framework.problem import Sensitivities

    s = Sensitivities(np.array([True, False]), np.array([[1.0, np.nan], [2.0, 3.0]]), np.full((2, 2), 0.5),
                      np.array([4.0, 5.0]), {"k": 1})
    back = Sensitivities.from_json(s.mask, json.loads(json.dumps(s.to_json())))
    np.testing.assert_array_equal(back.delta, s.delta)
    np.testing.assert_array_equal(back.values, s.values)
    assert back.info == {"k": 1}


def test_problem_without_sensitivities_says_so():
    from framework.problem import NoSensitivities

    problem = PROBLEMS.create("rho-mnk", n_bits=8, k=1, seed=0)
    assert not problem.has_sensitivities
    with pytest.raises(NoSensitivities, match="offers no head sensitivities"):
        problem.sensitivities(np.ones(8, dtype=bool))


def test_a_strategy_that_keeps_requesting_the_same_sensitivities_is_stopped():
    class Stuck(_SensitivityEveryRound):
        def sensitivity_request(self):
            return self.problem.space.keep_all()[0]

    problem = PROBLEMS.create("rho-mnk", n_bits=8, k=1, seed=0, sensitivity_noise=0.3)
    with pytest.raises(StrategyStalled, match="requested already received sensitivities"):
        optimize(problem, Stuck(), 10, max_stall=5)
