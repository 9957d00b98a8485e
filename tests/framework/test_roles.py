"""Objective roles declared on the problem: which objective is the bias to lower and which the utility
cost to bound.  The pick rule, the verdict, the report and front.png read them from the problem.

The swapped problem below is :class:`ItemProblem` with its objectives in the other order
(objective 0 the perplexity, objective 1 the bias) and roles declared to say so: every figure the
run finishes with must be the same as the original's, and with the default roles (0 = bias) it
would not be."""

from __future__ import annotations

import json

import numpy as np
import pytest

from framework.choice import choose_mask, verify_choice
from framework.loop import optimize
from framework.problem import SEARCH, Problem, validate_roles
from framework.space import HeadSpace
from framework.store import EvaluationStore
from framework.strategy import ProblemInfo
from framework.verdict import NO_REPAIR, REPAIRED, VALIDATION, roles
from tests.framework.test_choose_and_report import UNPRUNED, Fixed, ItemProblem, finish, knockouts, run


class SwappedItems(Problem):
    """:class:`ItemProblem` with objective 0 the perplexity (the cost) and objective 1 the bias."""

    name = "items"
    bias_objective = 1
    cost_objectives = (0,)

    def __init__(self, **kw) -> None:
        self.inner = ItemProblem(**kw)
        self.splits, self.space = self.inner.splits, self.inner.space
        self.objective_names = self.inner.objective_names[::-1]
        self.ref_point = self.inner.ref_point[::-1].copy()
        self.bounds = self.inner.bounds[:, ::-1].copy()

    def _evaluate(self, masks, split):
        out = self.inner._evaluate(masks, split)
        values, infos = out if isinstance(out, tuple) else (out, None)
        values = values[:, ::-1].copy()
        return values if infos is None else (values, infos)        # infos are keyed by name: unchanged

    def baseline(self, split=SEARCH):
        base = self.inner.baseline(split)
        return None if base is None else base[::-1].copy()

    def describe(self):
        return {"swapped": self.inner.describe()}


class SwappedDefaultRoles(SwappedItems):
    """The same objectives, but the roles left at the defaults (objective 0, perplexity, as the bias)."""

    bias_objective = 0
    cost_objectives = (1,)


class Tiny(Problem):
    """Three objectives, roles set per instance."""

    name = "tiny"

    def __init__(self, bias=0, costs=None) -> None:
        self.space = HeadSpace.binary(3)
        self.objective_names = ("a", "b", "c")
        self.ref_point = np.ones(3)
        self.bounds = np.array([np.zeros(3), np.ones(3)])
        self.bias_objective = bias
        if costs is not None:
            self.cost_objectives = costs

    def _evaluate(self, masks, split):
        return (~masks).astype(float)

    def describe(self):
        return {}


# ----------------------------------------------------------------------- declaring and validating
def test_default_roles_bias_first_every_other_objective_a_cost():
    assert ItemProblem().check_roles() == (0, (1,)) and roles(ItemProblem()) == (0, 1)
    assert Tiny().cost_objectives == (1, 2) and Tiny().check_roles() == (0, (1, 2))
    assert Tiny(bias=2).cost_objectives == (0, 1) and roles(Tiny(bias=2)) == (2, 0)
    assert Tiny(bias=1, costs=(2,)).check_roles() == (1, (2,)) and roles(Tiny(bias=1, costs=(2,))) == (1, 2)
    assert roles(SwappedItems()) == (1, 0)


def test_the_shipped_problems_declare_bias_then_perplexity():
    from framework.registry import PROBLEMS
    from objectives.fasp_heads import FaspHeadsProblem
    from objectives.masked_lm.problem import MaskedLMProblem
    from objectives.replay import ReplayProblem

    for cls in (MaskedLMProblem, FaspHeadsProblem, ReplayProblem):
        assert (cls.bias_objective, cls.cost_objectives) == (0, (1,)), cls
    assert MaskedLMProblem.objective_names == ("bias", "perplexity")
    assert PROBLEMS.create("knapsack", n_items=8).check_roles() == (0, (1,))
    assert PROBLEMS.create("rho-mnk", n_bits=8, n_objectives=3).check_roles() == (0, (1, 2))


@pytest.mark.parametrize(("bias", "costs", "message"), [
    (3, None, "bias_objective 3 is out of range: it has 3 objective(s), indices 0..2"),
    (-1, None, "bias_objective -1 is out of range"),
    (0, (1, 5), "cost objective 5 is out of range"),
    (1, (0, 1), "objective 1 is declared both the bias and a cost"),
    (0, (2, 2), "cost_objectives (2, 2) repeats an objective"),
    ("bias", None, "bias_objective must be an objective index (int), got 'bias'"),
    (0, (1.0,), "cost objective must be an objective index (int), got 1.0"),
])
def test_invalid_roles_raise_a_clear_error(bias, costs, message):
    problem = Tiny(bias=bias, costs=costs)
    with pytest.raises(ValueError, match="problem 'tiny': ") as err:
        problem.check_roles()
    assert message in str(err.value)
    with pytest.raises(ValueError) as err2:        # the pick rule, verdict and plots refuse them as well
        roles(problem)
    assert message in str(err2.value)


def test_cost_objectives_must_be_a_sequence_of_indices():
    with pytest.raises(ValueError, match="problem 'tiny': cost_objectives must be a tuple of objective indices, got 1"):
        Tiny(costs=1)
    with pytest.raises(ValueError, match="cost_objectives must be a tuple of objective indices, got 'b'"):
        validate_roles(0, "b", 3, problem="tiny")


def test_invalid_roles_stop_the_pick_before_anything_is_chosen():
    problem = SwappedItems()
    problem.cost_objectives = (1,)                  # the bias declared a cost too
    result = run(SwappedItems())
    with pytest.raises(ValueError, match="objective 1 is declared both the bias and a cost"):
        choose_mask(problem, result)


def test_a_problem_without_a_cost_objective_has_no_roles_for_the_pick_rule():
    problem = Tiny(costs=())
    assert problem.check_roles() == (0, ())
    with pytest.raises(ValueError, match="declares no cost objective"):
        roles(problem)


def test_objects_that_are_no_problem_get_the_default_roles():
    class Bare:
        objective_names = ("x", "y")

    assert roles(Bare()) == (0, 1)


# ----------------------------------------------------------------------- ProblemInfo
def test_problem_info_carries_the_roles():
    info = ProblemInfo.of(SwappedItems())
    assert (info.bias_objective, info.cost_objectives) == (1, (0,))
    assert (ProblemInfo.of(Tiny(bias=2)).bias_objective, ProblemInfo.of(Tiny(bias=2)).cost_objectives) == (2, (0, 1))
    plain = ProblemInfo.of(ItemProblem())
    assert (plain.bias_objective, plain.cost_objectives) == (0, (1,))

    class NotAProblem:                                # duck-typed: no roles declared, the defaults
        space = HeadSpace.binary(2)
        objective_names = ("f", "g")
        ref_point = [1.0, 1.0]
        bounds = [[0.0, 0.0], [1.0, 1.0]]

    bare = ProblemInfo.of(NotAProblem())
    assert (bare.bias_objective, bare.cost_objectives, bare.has_sensitivities) == (0, (1,), False)

    # the loop hands strategies the same info
    seen = {}

    class Spy(Fixed):
        def _setup(self):
            seen["info"] = self.problem

    optimize(SwappedItems(), Spy(knockouts()), 5, batch_size=5)
    assert (seen["info"].bias_objective, seen["info"].cost_objectives) == (1, (0,))


# ----------------------------------------------------------------------- the pick rule and the verdict
def test_pick_and_verdict_follow_the_declared_roles():
    plain, swapped, default = ItemProblem(), SwappedItems(), SwappedDefaultRoles()
    with EvaluationStore(":memory:") as store:
        want = choose_mask(plain, run(plain, store=store), store)
    got = choose_mask(swapped, run(swapped))
    # the same mask as the original order: h0 (-30% bias) under the 5% perplexity limit
    assert got.index == want.index == 1 and got.is_repair and got.rule == want.rule
    assert np.allclose(got.values, want.values[::-1]) and np.allclose(got.baseline, UNPRUNED[VALIDATION][::-1])
    assert [c["reasons"] for c in got.candidates] == [c["reasons"] for c in want.candidates]
    chosen = verify_choice(swapped, got)
    assert chosen["roles"] == {"bias": "bias", "cost": "perplexity"}
    v = chosen["verdict"]
    assert v["status"] == REPAIRED and v["bias"] == "bias" and v["cost"] == "perplexity"
    assert v["bias_change"] == pytest.approx(-0.30)
    # with the default roles the perplexity would be the bias: no mask lowers it, so nothing qualifies
    other = choose_mask(default, run(default))
    assert other.index is None and not other.is_repair
    assert other.rule.startswith("among the front masks (the unpruned mask excluded) with bias at most 5%")
    assert verify_choice(default, other)["verdict"]["status"] == NO_REPAIR


def test_finish_run_report_and_plot_follow_the_declared_roles(tmp_path):
    (tmp_path / "plain").mkdir()
    (tmp_path / "swapped").mkdir()
    (tmp_path / "default").mkdir()
    _, report_plain = finish(tmp_path / "plain", ItemProblem())
    _, report_swapped = finish(tmp_path / "swapped", SwappedItems())
    _, report_default = finish(tmp_path / "default", SwappedDefaultRoles())
    chosen = json.loads((tmp_path / "swapped" / "run" / "chosen_mask.json").read_text())
    assert chosen["verdict"]["status"] == REPAIRED and chosen["index"] == 1
    assert "**Verdict: repaired.**" in report_swapped and "**Verdict: no repair found.**" in report_default
    # the candidates table reads bias and cost by role
    assert "| 1 | 1 | -30.0% | +2.0% | +2.0% | **chosen** |" in report_plain
    assert "| 1 | 1 | -30.0% | +2.0% | +2.0% | **chosen** |" in report_swapped
    # front.png: x = cost, y = bias by role, so the swapped problem draws the very same picture
    png = {k: (tmp_path / k / "run" / "front.png").read_bytes() for k in ("plain", "swapped", "default")}
    assert png["swapped"] == png["plain"]
    assert png["default"] != png["plain"]
