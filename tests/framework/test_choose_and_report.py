"""Finishing a run claims only what held: the pick rule, the verification with paired standard
errors, the verdict and every sentence the report prints about it, and front.png.

The problem here is small but real: each split has its own items; pruning head ``i`` moves every
item's bias by ``bias_effects[split][i]`` (relative, plus per-item noise of mean zero) and its
cost by ``cost_effects[split][i]``, so a single knock-out's relative change is exactly its effect.
The paired standard errors are a bootstrap over items of the change against the unpruned model
on the same items, as ``masked-lm`` reports them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from framework.choice import Choice, choose_mask, verify_choice
from framework.config import RunConfig
from framework.loop import optimize
from framework.problem import HELDOUT, SEARCH, Problem
from framework.report import verdict_sentences
from framework.result_files import write_result
from framework.results import OptimizationResult
from framework.runs import finish_run
from framework.space import HeadSpace
from framework.store import EvaluationStore
from framework.strategy import Strategy
from framework.verdict import (
    BIAS_INCREASED,
    COST_OVER_LIMIT,
    NO_REPAIR,
    NOT_SIGNIFICANT,
    REPAIRED,
    SIGNIFICANCE,
    VALIDATION,
)

ALL_SPLITS = (SEARCH, VALIDATION, HELDOUT)
UNPRUNED = {SEARCH: (1.0, 20.0), VALIDATION: (1.5, 30.0), HELDOUT: (0.8, 25.0)}   # (bias, perplexity) per split
# four heads; single knock-outs: h0 a clean repair, h1 costs 10% perplexity on held-out data only,
# h2 costs 10% on validation data only, h3 a small repair; on search all four are non-dominated
BIAS = {s: [-0.30, -0.40, -0.50, -0.10] for s in ALL_SPLITS}
COST = {SEARCH: [0.02, 0.03, 0.04, 0.01], VALIDATION: [0.02, 0.03, 0.10, 0.01], HELDOUT: [0.02, 0.10, 0.04, 0.01]}


class ItemProblem(Problem):
    """Bias = mean over items, perplexity = mean over items; infos with honest paired bootstrap SEs."""

    name = "items"

    def __init__(self, *, splits=ALL_SPLITS, bias_effects=None, cost_effects=None, noise=None,
                 report_se: bool = True, n_items: int = 80, n_boot: int = 400, seed: int = 0) -> None:
        self.splits = tuple(splits)
        self.bias_effects = {s: list(v) for s, v in (bias_effects or BIAS).items()}
        self.cost_effects = {s: list(v) for s, v in (cost_effects or COST).items()}
        self.noise = {s: 0.05 for s in self.splits} | dict(noise or {})
        self.report_se, self.n_items, self.n_boot = report_se, n_items, n_boot
        d = len(self.bias_effects[SEARCH])
        self.space = HeadSpace(1, d)
        self.objective_names = ("bias", "perplexity")
        b0, p0 = UNPRUNED[SEARCH]
        self.ref_point = np.array([1.1 * b0, 1.25 * p0])
        self.bounds = np.array([[0.0, p0], self.ref_point])
        rng = np.random.default_rng(seed)
        self._z = {}
        for s in self.splits:
            z = rng.standard_normal((2, d, n_items))
            self._z[s] = z - z.mean(axis=2, keepdims=True)   # per-item deviations of mean zero
        self._boot = rng.integers(0, n_items, (n_boot, n_items))
        self.exported: list[str] = []

    def _items(self, masks: np.ndarray, split: str) -> tuple[np.ndarray, np.ndarray]:
        pruned = (~masks).astype(float)
        b0, p0 = UNPRUNED[split]
        e = np.asarray(self.bias_effects[split])[:, None] + self.noise[split] * self._z[split][0]
        c = np.asarray(self.cost_effects[split])[:, None] + 0.002 * self._z[split][1]
        return b0 * (1 + pruned @ e), p0 * (1 + pruned @ c)

    def _evaluate(self, masks, split):
        items = self._items(masks, split)
        base = self._items(self.space.keep_all(), split)
        values = np.stack([x.mean(axis=1) for x in items], axis=1)
        if not self.report_se:
            return values
        infos = [{} for _ in masks]
        for name, x, b in zip(self.objective_names, items, base, strict=True):
            boot = x[:, self._boot].mean(axis=2)                       # [n, n_boot]
            rel_boot = boot / b[0, self._boot].mean(axis=1) - 1.0      # paired: the same items resampled
            for i, inf in enumerate(infos):
                inf[name] = float(x[i].mean())
                inf[f"{name}_se"] = float(boot[i].std(ddof=1))
                inf[f"{name}_rel"] = float(x[i].mean() / b[0].mean() - 1.0)
                inf[f"{name}_rel_se"] = float(rel_boot[i].std(ddof=1))
        return values, infos

    def baseline(self, split=SEARCH):
        return np.array(UNPRUNED[split]) if split in self.splits else None

    def describe(self):
        return {"splits": self.splits, "bias": self.bias_effects, "cost": self.cost_effects, "noise": self.noise,
                "report_se": self.report_se, "n_items": self.n_items}

    def export(self, mask, out_dir, metadata):
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / "mask.json").write_text(json.dumps([int(b) for b in mask]))
        self.exported.append(out_dir)
        return out_dir


class Fixed(Strategy):
    """Asks the given masks in order."""

    def __init__(self, masks: np.ndarray) -> None:
        self.masks = masks            # its option, under its own name (options() records it)
        self._todo = list(masks)

    def ask(self, n):
        out, self._todo = self._todo[:n], self._todo[n:]
        return np.array(out)

    def tell(self, masks, values):
        pass


def knockouts(d: int = 4, *, keep_all: bool = True) -> np.ndarray:
    """The unpruned mask (first) and every single-head knock-out: evaluation ``1 + i`` prunes head ``i``."""
    masks = ~np.eye(d, dtype=bool)
    return np.vstack([np.ones((1, d), dtype=bool), masks]) if keep_all else masks


def run(problem: Problem, masks: np.ndarray | None = None, store: EvaluationStore | None = None) -> OptimizationResult:
    masks = knockouts(problem.space.dim) if masks is None else masks
    return optimize(problem, Fixed(masks), len(masks), batch_size=len(masks), store=store)


def chosen_of(problem: Problem, *, max_cost: float = 5.0, split: str = VALIDATION, masks=None) -> dict:
    with EvaluationStore(":memory:") as store:
        result = run(problem, masks, store)
        choice = choose_mask(problem, result, store, max_cost=max_cost, split=split)
        return verify_choice(problem, choice, store)


def finish(tmp_path: Path, problem: Problem, *, max_cost: float = 5.0, pick_split: str = VALIDATION,
           masks=None) -> tuple[dict, str]:
    out = tmp_path / "run"
    out.mkdir()
    cfg = RunConfig(problem="items", strategy="fixed", budget=5, out=str(out), max_cost=max_cost,
                    pick_split=pick_split)
    with EvaluationStore(out / "evaluations.sqlite") as store:
        result = run(problem, masks, store)
        write_result(out, result, cfg, strategy_diagnostics={})
        figures = finish_run(out, problem, result, cfg, store, log=lambda _: None)
    return figures, (out / "report.md").read_text()


def text(sentences: list[str]) -> str:
    return " ".join(sentences)


# ----------------------------------------------------------------------- the pick rule
def test_pick_on_validation_by_default_with_cost_limits_on_validation_and_heldout():
    assert RunConfig().pick_split == VALIDATION
    problem = ItemProblem()
    with EvaluationStore(":memory:") as store:
        result = run(problem, store=store)
        assert result.front_index.tolist() == [0, 1, 2, 3, 4]        # keep-all and every knock-out
        choice = choose_mask(problem, result, store)
        # h1 (-40%) fails on held-out perplexity, h2 (-50%) on validation perplexity: h0 (-30%) wins over h3
        assert choice.split == VALIDATION and choice.index == 1 and choice.is_repair
        assert np.allclose(choice.values, [1.5 * 0.7, 30 * 1.02], rtol=1e-9)
        assert np.allclose(choice.baseline, UNPRUNED[VALIDATION])
        assert choice.cost_splits == (VALIDATION, HELDOUT)
        why = {c["index"]: c for c in choice.candidates}
        assert why[0]["reasons"] == ["the unpruned mask (never a repair)"] and not why[0]["qualified"]
        assert why[2]["reasons"] == ["perplexity +10.0% on heldout, over the 5% limit"]
        assert why[3]["reasons"] == ["perplexity +10.0% on validation, over the 5% limit"]
        assert why[1]["qualified"] and why[4]["qualified"] and why[4]["reasons"] == []
        # the non-search splits were evaluated through the store, once
        assert store.count(problem.fingerprint(VALIDATION)) == 4 and store.count(problem.fingerprint(HELDOUT)) == 4
        # a looser limit lets the lowest validation bias win
        assert choose_mask(problem, result, store, max_cost=20.0).index == 3


def test_heldout_cost_alone_disqualifies():
    cost = dict(COST, **{HELDOUT: [0.02, 0.03, 0.04, 0.01], VALIDATION: [0.02, 0.03, 0.04, 0.01]})
    assert choose_mask(ItemProblem(cost_effects=cost), run(ItemProblem(cost_effects=cost))).index == 3  # h2
    cost[HELDOUT] = [0.02, 0.03, 0.06, 0.01]                                  # h2: +6% on held-out only
    problem = ItemProblem(cost_effects=cost)
    choice = choose_mask(problem, run(problem))
    assert choice.index == 2                                                  # h1, the next lowest bias
    assert [c["reasons"] for c in choice.candidates if c["index"] == 3] == [
        ["perplexity +6.0% on heldout, over the 5% limit"]]


def test_validation_cost_alone_disqualifies():
    cost = dict(COST, **{HELDOUT: [0.02, 0.03, 0.04, 0.01], VALIDATION: [0.02, 0.03, 0.051, 0.01]})
    problem = ItemProblem(cost_effects=cost)
    choice = choose_mask(problem, run(problem))
    assert choice.index == 2
    assert [c["reasons"] for c in choice.candidates if c["index"] == 3] == [
        ["perplexity +5.1% on validation, over the 5% limit"]]


def test_lowest_bias_on_the_pick_split_wins():
    bias = dict(BIAS, **{VALIDATION: [-0.30, -0.40, -0.50, -0.45]})         # h3 is best on validation data only
    problem = ItemProblem(bias_effects=bias)
    result = run(problem)
    assert choose_mask(problem, result).index == 4                           # validation (default): h3
    search = choose_mask(problem, result, split=SEARCH)
    assert search.index == 1 and search.split == SEARCH                      # search: h0
    assert search.cost_splits == (SEARCH, VALIDATION, HELDOUT)
    with pytest.raises(ValueError, match="held-out"):
        choose_mask(problem, result, split=HELDOUT)


def test_bias_must_beat_the_unpruned_model_on_the_pick_split():
    bias = dict(BIAS, **{VALIDATION: [0.05, -0.40, -0.50, 0.01]})            # h0 and h3 worse on validation
    problem = ItemProblem(bias_effects=bias)
    choice = choose_mask(problem, run(problem))
    assert choice.index is None
    why = {c["index"]: c["reasons"] for c in choice.candidates}
    assert why[1] == ["bias +5.0% on validation, not below the unpruned model"]
    assert why[4] == ["bias +1.0% on validation, not below the unpruned model"]


def test_keep_all_is_never_a_repair():
    problem = ItemProblem()
    result = run(problem)
    choice = choose_mask(problem, result, max_cost=0.5)                      # every knock-out costs >= 1%
    assert choice.index is None and not choice.is_repair and choice.mask.all()
    assert np.allclose(choice.values, UNPRUNED[VALIDATION])
    # a front holding the unpruned mask alone: still no repair
    worse = ItemProblem(bias_effects={s: [0.1, 0.2, 0.3, 0.4] for s in ALL_SPLITS})
    result = run(worse)
    assert result.front_index.tolist() == [0]
    assert choose_mask(worse, result).index is None


def test_python_api_without_store_matches_the_store_pick():
    problem = ItemProblem()
    result = run(problem)
    with EvaluationStore(":memory:") as store:
        assert choose_mask(problem, result).index == choose_mask(problem, result, store).index == 1
    chosen = verify_choice(problem, choose_mask(problem, result))
    assert chosen["verdict"]["status"] == REPAIRED


def test_no_baseline_no_choice():
    from framework.registry import PROBLEMS

    knap = PROBLEMS.create("knapsack", n_items=8)
    result = optimize(knap, Fixed(knockouts(8)), 9, batch_size=9)
    assert choose_mask(knap, result) is None


# ----------------------------------------------------------------------- verification
def test_verification_fields_and_significance():
    problem = ItemProblem()
    chosen = chosen_of(problem)
    assert chosen["index"] == 1 and chosen["pick_split"] == VALIDATION and chosen["pruned_heads"] == [0]
    assert chosen["roles"] == {"bias": "bias", "cost": "perplexity"}
    assert set(chosen["splits"]) == set(ALL_SPLITS)
    _, infos = problem.evaluate_with_info(~np.eye(4, dtype=bool)[:1], HELDOUT)
    for split, entry in chosen["splits"].items():
        for name, effect in (("bias", -0.30), ("perplexity", 0.02)):
            e = entry[name]
            assert set(e) == {"value", "se", "unpruned", "unpruned_se", "relative_change", "relative_change_se",
                              "significant"}
            assert e["unpruned"] == pytest.approx(UNPRUNED[split][name == "perplexity"])
            assert e["relative_change"] == pytest.approx(effect, abs=1e-9)
            assert 0 < e["relative_change_se"] < abs(effect) / SIGNIFICANCE and e["significant"]
            assert e["se"] > 0 and e["unpruned_se"] == pytest.approx(0.0, abs=1e-12)  # constant unpruned items
    assert chosen["splits"][HELDOUT]["bias"]["relative_change_se"] == pytest.approx(infos[0]["bias_rel_se"])
    v = chosen["verdict"]
    assert v["status"] == REPAIRED and v["judged_on"] == HELDOUT and v["se_known"]
    assert v["bias_change"] == pytest.approx(-0.30) and v["cost_splits"] == [VALIDATION, HELDOUT]
    assert v["comparison"]["significant"] is False and v["comparison"]["difference"] == pytest.approx(0, abs=1e-9)
    json.dumps(chosen)                                                       # chosen_mask.json is plain JSON


def test_not_significant_when_heldout_change_is_within_two_se():
    problem = ItemProblem(bias_effects=dict(BIAS, **{HELDOUT: [-0.02, -0.40, -0.50, -0.10]}),
                          noise={HELDOUT: 0.3})
    chosen = chosen_of(problem)
    e = chosen["splits"][HELDOUT]["bias"]
    assert e["relative_change"] == pytest.approx(-0.02) and not e["significant"]
    assert abs(e["relative_change"]) < SIGNIFICANCE * e["relative_change_se"]
    v = chosen["verdict"]
    assert v["status"] == NOT_SIGNIFICANT and v["se_known"]
    s = text(verdict_sentences(chosen))
    assert v["message"].startswith("Not significant: bias on the heldout split changed by -2.0% ± ")
    assert "within 2 standard errors of no change; no repair is claimed." in s
    assert "Repaired" not in s
    # the reduction held on search data but not on held-out data: the comparison says so, with SEs
    assert "The held-out bias change (-2.0% ± " in s and "is significantly above the search change (-30.0% ± " in s
    assert "the reduction on search data does not fully transfer to held-out data." in s


def test_bias_increased_on_heldout():
    chosen = chosen_of(ItemProblem(bias_effects=dict(BIAS, **{HELDOUT: [0.2, -0.40, -0.50, -0.10]})))
    assert chosen["verdict"]["status"] == BIAS_INCREASED
    assert chosen["verdict"]["message"].startswith("Not repaired: bias on the heldout split rose by 20.0% ± ")
    assert "more than 2 standard errors: the chosen mask makes it worse there." in chosen["verdict"]["message"]


def test_se_unknown_never_claims_a_repair():
    chosen = chosen_of(ItemProblem(report_se=False))
    assert chosen["index"] == 1
    e = chosen["splits"][HELDOUT]["bias"]
    assert e["relative_change"] == pytest.approx(-0.30) and e["relative_change_se"] is None
    assert not e["significant"] and e["se"] is None
    v = chosen["verdict"]
    assert v["status"] == NOT_SIGNIFICANT and not v["se_known"]
    s = text(verdict_sentences(chosen))
    assert ("Not significant: bias on the heldout split changed by -30.0%, but the problem reports no paired standard "
            "error for it, so the change cannot be told from noise; no repair is claimed.") in s
    assert ("The bias changes on search data (-30.0%) and held-out data (-30.0%) cannot be compared: the problem "
            "reports no paired standard errors.") in s


def test_cost_over_limit_is_not_a_repair():
    problem = ItemProblem()
    result = run(problem)
    picked = choose_mask(problem, result)
    h1 = result.masks[2]                                                     # +10% perplexity on held-out
    forced = Choice(h1, 2, VALIDATION, picked.values, picked.baseline, picked.rule, max_cost=5.0)
    chosen = verify_choice(problem, forced)                                  # cost splits default to the rule's
    assert chosen["cost_splits"] == [VALIDATION, HELDOUT]
    assert chosen["verdict"]["status"] == COST_OVER_LIMIT
    assert chosen["verdict"]["message"] == ("Not repaired: the chosen mask's perplexity is +10.0% against the "
                                            "unpruned model on the heldout split, over the 5% limit.")


# ----------------------------------------------------------------------- every sentence
def test_sentences_repaired_with_agreeing_splits():
    chosen = chosen_of(ItemProblem())
    s = verdict_sentences(chosen, exported="run/model")
    assert s[0].startswith("Repaired: bias on the heldout split fell by 30.0% ± ")
    assert s[0].endswith("(paired standard error), more than 2 standard errors, with perplexity within 5% of the "
                         "unpruned model on validation and heldout.")
    assert s[1].startswith("The bias changes on search data (-30.0% ± ") and "agree within 2 standard errors" in s[1]
    assert s[2] == "2 of 5 front masks qualified under the rule; the table below says why the others did not."
    assert s[3] == ("The search split steered the search; the mask was picked on validation bias, with perplexity "
                    "on validation and heldout as a limit; held-out bias was never used to pick.")
    assert s[4] == "Exported model: `run/model` (loads with `AutoModelForCausalLM.from_pretrained`)."
    assert len(s) == 5


def test_sentences_heldout_reduction_larger_and_all_qualified():
    problem = ItemProblem(bias_effects=dict(BIAS, **{HELDOUT: [-0.60, -0.40, -0.50, -0.10]}))
    chosen = chosen_of(problem, masks=knockouts(keep_all=False)[[0, 3]])    # h0 and h3 only: both qualify
    s = verdict_sentences(chosen)
    assert chosen["verdict"]["status"] == REPAIRED
    assert any(x.startswith("The held-out bias change (-60.0% ± ") and "is significantly below the search change "
               "(-30.0% ± " in x for x in s)
    assert "2 of 2 front masks qualified under the rule." in s


def test_sentences_not_confirmed_export():
    problem = ItemProblem(bias_effects=dict(BIAS, **{HELDOUT: [-0.02, -0.4, -0.5, -0.1]}), noise={HELDOUT: 0.3})
    chosen = chosen_of(problem)
    assert chosen["verdict"]["status"] == NOT_SIGNIFICANT
    assert verdict_sentences(chosen, exported="m")[-1] == (
        "Exported model: `m` (loads with `AutoModelForCausalLM.from_pretrained`); it holds the chosen mask, which "
        "the verdict above does not confirm as a repair.")


def test_sentences_no_repair_found():
    chosen = chosen_of(ItemProblem(), max_cost=0.5)
    assert chosen["index"] is None and chosen["verdict"]["status"] == NO_REPAIR
    s = verdict_sentences(chosen)
    assert s[0] == ("No repair found: no front mask kept perplexity within 0.5% of the unpruned model on validation "
                    "and heldout while lowering bias below the unpruned model on the validation split, so the "
                    "unpruned model is kept and nothing is exported.")
    assert chosen["verdict"]["message"] == s[0]
    assert "0 of 5 front masks qualified under the rule; the table below says why the others did not." in s
    assert not any("Repaired" in x or "agree" in x or "Exported" in x for x in s)


def test_sentences_without_heldout_split():
    problem = ItemProblem(splits=(SEARCH, VALIDATION))
    chosen = chosen_of(problem)
    v = chosen["verdict"]
    assert v["judged_on"] == VALIDATION and not v["has_heldout"] and v["comparison"] is None
    assert v["status"] == REPAIRED and v["cost_splits"] == [VALIDATION]
    s = verdict_sentences(chosen)
    assert s[1] == ("This problem has no held-out split, so the verdict is judged on the validation split, which "
                    "picked the mask: the figure is optimistic.")
    assert s[-1] == ("The search split steered the search; the mask was picked on validation bias, with perplexity "
                     "on validation as a limit.")


def test_sentences_search_split_only():
    problem = ItemProblem(splits=(SEARCH,))
    chosen = chosen_of(problem)                                              # asks for validation: falls back
    assert chosen["pick_split"] == SEARCH and chosen["verdict"]["judged_on"] == SEARCH
    s = verdict_sentences(chosen)
    assert ("This problem has no held-out split, so the verdict is judged on the search split, which picked the "
            "mask and which the search optimized: the figure is optimistic.") in s
    assert ("The problem has no validation split, so the mask was picked on the search split, which the search "
            "optimized (optimistic).") in s


# ----------------------------------------------------------------------- finish_run: files and report
def test_finish_run_repaired_writes_report_plot_and_export(tmp_path):
    problem = ItemProblem()
    figures, report = finish(tmp_path, problem)
    out = tmp_path / "run"
    chosen = json.loads((out / "chosen_mask.json").read_text())
    assert chosen["verdict"]["status"] == REPAIRED and chosen["index"] == 1
    assert (out / "front.png").stat().st_size > 10_000 and (out / "hv.png").is_file()
    assert problem.exported == [str(out / "model")] and figures["exported"] == str(out / "model")
    assert "**Verdict: repaired.**" in report
    assert " ".join(verdict_sentences(chosen, exported=figures["exported"])) in report
    assert "held-out reduction is at least half" not in report
    assert "| 1 | 1 | -30.0% | +2.0% | +2.0% | **chosen** |" in report
    assert "| 2 | 1 | -40.0% | +3.0% | +10.0% | no: perplexity +10.0% on heldout, over the 5% limit |" in report
    heldout = json.loads((out / "heldout.json").read_text())
    assert not any(c["significant"] for c in heldout["front"][0]["heldout_change"].values())  # the unpruned mask
    first = heldout["front"][1]
    assert first["heldout_change"]["bias"]["relative_change"] == pytest.approx(-0.30)
    assert first["search_change"]["bias"]["relative_change_se"] > 0          # from the stored search infos
    assert "(-30.0% ± " in report and "`model/`" in report


def test_finish_run_no_repair_exports_nothing(tmp_path):
    problem = ItemProblem()
    figures, report = finish(tmp_path, problem, max_cost=0.5)
    assert problem.exported == [] and "exported" not in figures and not (tmp_path / "run" / "model").exists()
    assert "**Verdict: no repair found.**" in report and "unpruned model is kept" in report
    assert "Repaired" not in report and "Exported model" not in report and "heads pruned" not in report
    assert (tmp_path / "run" / "front.png").is_file()


def test_finish_run_not_significant_and_se_unknown_reports(tmp_path):
    problem = ItemProblem(report_se=False)
    figures, report = finish(tmp_path, problem)
    assert "**Verdict: not significant.**" in report and "cannot be told from noise" in report
    assert "Repaired" not in report
    assert "Exported model: `" in report and "does not confirm as a repair" in report
    assert (tmp_path / "run" / "front.png").is_file()


def test_finish_run_raw_plot_without_baseline(tmp_path):
    from framework.cli import main

    out = tmp_path / "k"
    assert main(["run", "--problem", "knapsack", "--strategy", "random", "--budget", "6", "--set", "n_items=10",
                 "--out", str(out), "--quiet"]) == 0
    assert (out / "front.png").is_file() and not (out / "chosen_mask.json").exists()


def test_cli_export_refuses_when_no_repair_was_found(tmp_path, monkeypatch, capsys):
    from framework.cli import main
    from framework.registry import PROBLEMS, Entry

    PROBLEMS.names()  # read the entry points before adding a test entry for this test only
    monkeypatch.setitem(PROBLEMS._entries, "test-items", Entry("test-items", ItemProblem, "test", "test"))
    out = tmp_path / "run"
    assert main(["run", "--problem", "test-items", "--strategy", "random", "--budget", "6", "--max-cost", "0",
                 "--out", str(out), "--quiet"]) == 0
    chosen = json.loads((out / "chosen_mask.json").read_text())
    assert chosen["index"] is None and chosen["verdict"]["status"] == NO_REPAIR and not (out / "model").exists()
    assert json.loads((out / "run.json").read_text())["pick_split"] == VALIDATION
    capsys.readouterr()
    assert main(["export", str(out), "--out", str(tmp_path / "m")]) == 2
    assert "no repair found" in capsys.readouterr().err and not (tmp_path / "m").exists()
    # re-picked with a looser limit, a real repair is exported with its verification
    assert main(["export", str(out), "--out", str(tmp_path / "m"), "--max-cost", "60"]) == 0
    assert (tmp_path / "m" / "mask.json").is_file()


class ItemProblemWithAccuracy(ItemProblem):
    """Adds a non-objective figure (as masked-lm's multiple-choice accuracy) to the verification."""

    def verification_figures(self, mask, split):
        pruned = int((~np.asarray(mask, dtype=bool)).sum())
        return {"accuracy": {"value": 0.6 - 0.05 * pruned, "se": 0.02, "baseline": 0.6,
                             "change": -0.05 * pruned, "change_se": 0.01}}


def test_other_figures_of_the_chosen_mask_are_reported_beside_its_objectives(tmp_path):
    _, report = finish(tmp_path, ItemProblemWithAccuracy())
    chosen = json.loads((tmp_path / "run" / "chosen_mask.json").read_text())
    assert chosen["splits"][HELDOUT]["other"]["accuracy"]["change"] == pytest.approx(-0.05)
    assert "| heldout | accuracy | 0.55 ± 0.02 | 0.6 | -0.05 ± 0.01 |" in report
    (tmp_path / "b").mkdir()
    _, plain = finish(tmp_path / "b", ItemProblem())
    assert "Other figures of the chosen mask" not in plain


def test_a_mask_far_over_the_cost_limit_on_search_is_not_paid_for_on_other_splits():
    cost = {s: list(v) for s, v in COST.items()}
    cost[SEARCH][2] = 0.11                               # h2: +11% on search, over 2 x the 5% limit
    problem = ItemProblem(cost_effects=cost)
    with EvaluationStore(":memory:") as store:
        result = run(problem, store=store)
        choice = choose_mask(problem, result, store)
        h2 = knockouts()[3]
        assert store.get(problem.fingerprint(VALIDATION), h2[None]) == [None]
        assert store.get(problem.fingerprint(VALIDATION), knockouts()[1][None])[0] is not None
    (why,) = next(c for c in choice.candidates if c["index"] == 3)["reasons"]
    assert why == "perplexity +11.0% on search, over 2x the 5% limit (not evaluated on the other splits)"
    assert choice.index == 1                             # h0, as without the screen (h1 fails on held-out)
