"""The ``masked-lm`` problem end to end: a tiny random Llama saved to disk (fast), and the embedded SmolLM2."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import LlamaForCausalLM

from framework.registry import PROBLEMS
from objectives.masked_lm.problem import MaskedLMProblem

CORPUS_WORDS = [f"c{i}" for i in range(40)]  # the words of the `corpus_file` fixture (conftest)

def _masks(problem) -> np.ndarray:
    masks = problem.space.keep_all(3)
    masks[1, [0, 5]] = False
    masks[2, :3] = False
    return masks


def test_evaluate_keep_all_is_the_baseline_and_a_mask_moves_it(make):
    problem = make()
    assert problem.space.dim == 8 and problem.space.n_kv_heads == 2
    masks = _masks(problem)
    values, infos = problem.evaluate_with_info(masks, "search")
    assert values.shape == (3, 2) and np.isfinite(values).all()
    assert np.array_equal(values[0], problem.baseline("search"))
    assert infos[0]["bias_rel"] == 0.0 and infos[0]["perplexity_rel"] == 0.0 and infos[0]["bias_rel_se"] == 0.0
    assert not np.array_equal(values[1], values[0]) and not np.array_equal(values[2], values[0])
    for key in ("bias", "bias_se", "bias_rel", "bias_rel_se", "perplexity", "perplexity_se", "perplexity_rel",
                "perplexity_rel_se", "pair_fraction", "variants", "n_descriptors"):
        assert key in infos[1], key
    assert infos[1]["bias"] == values[1, 0] and infos[1]["perplexity"] == values[1, 1]
    assert infos[1]["perplexity_rel"] == pytest.approx(values[1, 1] / values[0, 1] - 1)
    assert len(infos[1]["variants"]) == 6
    assert infos[1]["variants"]["likelihood/sentence/descriptor"] == values[1, 0]
    json.dumps(infos)


def test_keep_all_is_answered_from_the_measured_baseline_without_running_the_model(make):
    problem = make()
    keep = problem.space.keep_all()
    base = problem.baseline("heldout")
    calls = []
    handle = problem.model.register_forward_hook(lambda *a: calls.append(1))
    try:
        values, infos = problem.evaluate_with_info(np.vstack([keep, keep]), "heldout")
    finally:
        handle.remove()
    assert calls == [] and np.array_equal(values[0], base) and np.array_equal(values[1], base)
    assert infos[0]["bias_se"] > 0 and infos[0]["perplexity_rel"] == 0.0
    # what it saves is a measurement that would have given the same numbers
    fresh = problem._measure(keep, "heldout", problem.axis, ["likelihood", "perplexity"])[0]
    for kind in ("likelihood", "perplexity"):
        for key, val in problem._baseline_raw("heldout", problem.axis, kind).items():
            assert np.array_equal(np.asarray(fresh[kind][key]), np.asarray(val)), (kind, key)


def test_same_mask_same_numbers_whatever_it_is_evaluated_with(make):
    problem = make()
    masks = _masks(problem)
    together, info_t = problem.evaluate_with_info(masks, "heldout")
    alone, info_a = problem.evaluate_with_info(masks[2:], "heldout")
    assert np.array_equal(together[2], alone[0]) and info_t[2] == info_a[0]
    assert np.array_equal(problem.evaluate(masks, "heldout"), together)


def test_generation_metric_is_reproducible(make):
    problem = make(bias_metric="generation", aggregate="sum", max_new_tokens=4, n_generation_templates=2,
                   generation_masks_per_forward=2)
    masks = _masks(problem)
    values, infos = problem.evaluate_with_info(masks, "validation")
    assert np.isfinite(values).all() and 0 <= infos[0]["zero_fraction"] <= 1
    assert infos[0]["bias_rel"] == 0.0 or np.isnan(infos[0]["bias_rel"])  # NaN when the baseline bias is 0
    assert np.array_equal(problem.evaluate(masks[1:2], "validation")[0], values[1])
    assert set(infos[0]["variants"]) == {"generation/sum", "generation/weighted", "generation/descriptor"}


def test_baseline_is_stored_and_reused(make, tmp_path):
    first = make()
    base = first.baseline("search")
    stored = list((tmp_path / "cache" / "baselines").glob("masked-lm-*.json"))
    assert len(stored) == 1 and set(json.loads(stored[0].read_text())) == {"likelihood", "perplexity"}
    second = make()

    def no_measuring(*args, **kwargs):
        raise AssertionError("the baseline should have been read from the store")

    second._measure = no_measuring
    assert np.array_equal(second.baseline("search"), base)
    np.testing.assert_allclose(second.ref_point, [1.1 * base[0], 1.25 * base[1]])
    np.testing.assert_allclose(second.bounds, [[0.0, base[1]], second.ref_point])


def test_fingerprint_follows_settings(make, tmp_path):
    a = make()
    assert a.fingerprint("search") == make().fingerprint("search")
    assert a.fingerprint("search") != a.fingerprint("heldout")
    for change in ({"scope": "after"}, {"aggregate": "sum"}, {"heldout_by": "template"}, {"n_windows": 2},
                   {"seed": 1}, {"bias_metric": "generation"}):
        assert make(**change).fingerprint("search") != a.fingerprint("search"), change
    other = tmp_path / "other.txt"
    other.write_text("\n\n".join(" ".join(CORPUS_WORDS[i:] * 4) for i in range(10)))
    assert make(corpus=str(other)).fingerprint() != a.fingerprint()
    settings = a.describe()
    json.dumps(settings)
    assert settings["holistic_bias"]["sha256"] and settings["corpus"]["sha256"] and settings["model"]["model_type"]


def test_report_gives_values_errors_and_relative_changes(make):
    problem = make(n_generation_templates=1, max_new_tokens=3)
    masks = _masks(problem)[1:]
    rep = problem.report(masks, ["search", "heldout"], metrics=["likelihood", "generation", "perplexity"])
    json.dumps(rep)
    assert set(rep["splits"]) == {"search", "heldout"}
    entry = rep["splits"]["heldout"]["masks"][0]
    assert entry["n_pruned"] == 2
    assert {"value", "se", "baseline", "rel", "rel_se"} <= set(entry["perplexity"])
    axis = entry["axes"]["gender_and_sex"]
    assert {"likelihood", "generation"} == set(axis)
    assert axis["likelihood"]["baseline"] == rep["splits"]["heldout"]["baseline"]["axes"]["gender_and_sex"][
        "likelihood"]
    with pytest.raises(ValueError, match="religion"):
        problem.report(masks, ["search"], axes=["religion"])
    with pytest.raises(ValueError, match="bleu"):
        problem.report(masks, ["search"], metrics=["bleu"])


def _next_token_logprob(problem, context: str, word: str) -> float:
    """log p(word | prefix + context) computed directly, one unpadded sequence."""
    tok = problem.tokenizer
    ids = [tok.bos_token_id, *tok(context, add_special_tokens=False)["input_ids"]]
    (target,) = tok(word, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = problem.model(input_ids=torch.tensor([ids])).logits[0, -1]
    return float(torch.log_softmax(logits.double(), -1)[target])


def test_pronoun_metric_measures_how_much_the_occupation_decides_the_pronoun(make):
    problem = make(bias_metric="pronoun", n_pronoun_occupations=4, n_pronoun_templates=3)
    masks = _masks(problem)
    values, infos = problem.evaluate_with_info(masks, "heldout")
    assert np.array_equal(values[0], problem.baseline("heldout"))
    cf = problem._counterfactual("pronoun")
    items = cf.items["heldout"]
    assert len(items) == 12 and len({it.occupation for it in items}) == 4
    with problem.masker.masked(masks[2]):
        lo = np.array([_next_token_logprob(problem, it.context, it.female[0])
                       - _next_token_logprob(problem, it.context, it.male[0]) for it in items])
    occ = np.array([it.occupation for it in items])
    per_occupation = np.array([lo[occ == o].mean() for o in dict.fromkeys(occ)])
    assert values[2, 0] == pytest.approx(per_occupation.std(), rel=1e-5)  # default: "spread"
    assert infos[2]["variants"]["pronoun/spread"] == values[2, 0]
    assert infos[2]["variants"]["pronoun/abs"] == pytest.approx(np.abs(lo).mean(), rel=1e-5)
    assert infos[2]["variants"]["pronoun/occupation"] == pytest.approx(np.abs(per_occupation).mean(), rel=1e-5)
    assert set(infos[2]["variants"]) == {"pronoun/abs", "pronoun/occupation", "pronoun/spread", "pronoun/stereotype"}
    assert infos[2]["bias_rel"] == pytest.approx(values[2, 0] / values[0, 0] - 1)
    assert infos[2]["bias_rel_se"] > 0 and infos[0]["bias_rel_se"] == 0.0
    assert infos[2]["n_occupations"] == 4 and infos[2]["n_templates"] == 3
    # splits are disjoint in occupations and in templates
    search = cf.items["search"]
    assert not {it.occupation for it in search} & {it.occupation for it in items}
    assert not {it.template for it in search} & {it.template for it in items}
    json.dumps(infos)


def test_pronoun_continuations_of_several_tokens_are_scored_over_all_of_them(make):
    from objectives.masked_lm.counterfactual import PronounBias
    from objectives.masked_lm.pronouns import PronounItem

    problem = make(bias_metric="pronoun", n_pronoun_occupations=2, n_pronoun_templates=1)
    items = [PronounItem("The nurse said that", (" she said",), (" he",), "nurse", "t", "subject", "f"),
             PronounItem("The pilot said that", (" she said",), (" he",), "pilot", "t", "subject", "m")] * 3
    splits = {"search": items, "validation": items, "heldout": items}
    cf = PronounBias(problem.tokenizer, splits, aggregate="abs", batch_size=4, n_boot=20, seed=0)
    lo = cf.log_odds(cf.measure(problem.model, "search"), "search")
    for it, got in zip(items, lo, strict=True):
        female = (_next_token_logprob(problem, it.context, " she")
                  + _next_token_logprob(problem, it.context + " she", " said"))
        assert got == pytest.approx(female - _next_token_logprob(problem, it.context, " he"), abs=1e-5)


def test_swap_metric_is_the_mean_absolute_gap_between_a_sentence_and_its_gender_swap(make):
    problem = make(bias_metric="swap")
    masks = _masks(problem)
    values, infos = problem.evaluate_with_info(masks, "validation")
    cf = problem._counterfactual("swap")
    pairs = cf.items["validation"]
    tok = problem.tokenizer

    def ll(text: str) -> float:
        ids = torch.tensor([[tok.bos_token_id, *tok(text, add_special_tokens=False)["input_ids"]]])
        with torch.no_grad():
            lp = torch.log_softmax(problem.model(input_ids=ids).logits[0, :-1].double(), -1)
        return float(lp.gather(-1, ids[0, 1:, None]).sum())

    with problem.masker.masked(masks[1]):
        gaps = np.array([ll(p.a) - ll(p.b) for p in pairs])
    assert values[1, 0] == pytest.approx(np.abs(gaps).mean(), rel=1e-5)
    assert {"swap/gap", "swap/stereotype", "swap/share"} == set(infos[1]["variants"])
    assert infos[1]["bias_rel_se"] > 0 and infos[1]["n_families"] >= 2
    families = {name: {p.family for p in cf.items[name]} for name in cf.items}
    assert not families["search"] & families["validation"] and not families["validation"] & families["heldout"]


def test_pairs_metric_reads_a_user_file_with_its_own_column_names(make, tmp_path):
    rows = [{"stereo": f"The {w} cried at work .", "anti": f"The {w} laughed at work .", "kind": "gender",
             "dir": "stereo" if i % 2 else "antistereo"} for i, w in enumerate(["nurse", "pilot", "chef", "baker",
                                                                                 "judge", "clerk", "cook", "guard",
                                                                                 "miner"])]
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    problem = make(bias_metric="pairs", pair_file=str(path),
                   pair_columns={"more": "stereo", "less": "anti", "group": "kind", "direction": "dir"})
    values, infos = problem.evaluate_with_info(_masks(problem), "search")
    assert np.isfinite(values).all() and infos[0]["n_items"] == 3 and infos[0]["n_labelled"] == 3
    assert problem.describe()["pairs"]["n_pairs"] == 9
    with pytest.raises(ValueError, match="pair_file"):
        make(bias_metric="pairs")
    with pytest.raises(ValueError, match="pair_columns"):
        make(bias_metric="pairs", pair_file=str(path), pair_columns={"sentence": "x"})


def test_multiple_choice_accuracy_is_reported_with_a_paired_change(make, tmp_path):
    rows = [{"context": f"The {w} said", "choices": [" he", " she", " that"], "label": i % 3}
            for i, w in enumerate(["nurse", "pilot", "chef", "baker", "judge", "clerk", "cook", "guard", "miner"])]
    path = tmp_path / "mc.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    problem = make(choice_file=str(path))
    masks = _masks(problem)
    rep = problem.report(masks, ["heldout"], metrics=["accuracy", "perplexity"])
    entries = rep["splits"]["heldout"]["masks"]
    assert entries[0]["accuracy"]["change"] == 0.0 and entries[0]["accuracy"]["n_items"] == 3
    assert 0 <= entries[2]["accuracy"]["value"] <= 1
    assert rep["splits"]["heldout"]["baseline"]["accuracy"] == entries[0]["accuracy"]["value"]
    assert "choice_file" in problem.describe()


def test_export_writes_a_loadable_pruned_model(make, tmp_path):
    problem = make()
    mask = _masks(problem)[1]
    out = problem.export(mask, str(tmp_path / "pruned"), {"note": "test"})
    record = json.loads((tmp_path / "pruned" / "head_mask.json").read_text())
    assert record["n_pruned"] == 2 and record["problem"] == "masked-lm" and record["note"] == "test"
    reloaded = LlamaForCausalLM.from_pretrained(out)
    ids = torch.tensor([[1, 5, 6, 7]])
    with torch.no_grad(), problem.masker.masked(mask):
        hooked = problem.model(input_ids=ids).logits
    torch.testing.assert_close(reloaded(input_ids=ids).logits, hooked, atol=1e-5, rtol=1e-4)


def test_registered_and_options_checked(tiny_dir, corpus_file, tmp_path, monkeypatch):
    assert "masked-lm" in PROBLEMS.names()
    for bad, match in (({"bias_metric": "stereoset"}, "stereoset"), ({"scope": "all"}, "'all'"),
                       ({"aggregate": "max"}, "'max'"), ({"ref_factors": (1.0, 2.0)}, "ref_factors")):
        with pytest.raises(ValueError, match=match):
            MaskedLMProblem(model=str(tiny_dir), corpus=str(corpus_file), **bad)
    monkeypatch.setenv("HEADREPAIR_CACHE", str(tmp_path / "cache"))
    problem = PROBLEMS.create("masked-lm", model=str(tiny_dir), corpus=str(corpus_file), window=32, stride=16,
                              n_windows=2, heldout_by="sentence")
    try:
        assert isinstance(problem, MaskedLMProblem) and problem.splits == ("search", "validation", "heldout")
        with pytest.raises(ValueError, match="religion"):
            MaskedLMProblem(model=str(tiny_dir), corpus=str(corpus_file), axis="religion")
    finally:
        problem.close()


@pytest.mark.slow
@pytest.mark.embedded
def test_embedded_model_end_to_end(embedded_model):
    """The embedded SmolLM2 (built-in prompts, default corpus), sizes cut down: keep-all equals the
    stored baseline, one mask moves both objectives, the report covers the held-out split."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # robust on a busy 2-core machine
    problem = MaskedLMProblem(n_windows=2, window=128, stride=96, n_templates=2, max_sentences=60)
    try:
        assert problem.space.dim == 270 and problem.space.n_kv_heads == 3
        masks = problem.space.keep_all(2)
        masks[1, [3, 40, 100, 200]] = False
        values, infos = problem.evaluate_with_info(masks, "search")
        np.testing.assert_array_equal(values[0], problem.baseline("search"))
        assert infos[0]["bias_rel"] == 0.0 and infos[0]["perplexity_rel"] == 0.0
        assert 5 < values[0, 1] < 100 and values[0, 0] > 0
        assert values[1, 1] != values[0, 1] and values[1, 0] != values[0, 0]
        assert infos[1]["bias_se"] > 0 and infos[1]["bias_rel_se"] > 0
        assert infos[1]["n_occupations"] == 16 and infos[1]["n_templates"] == 9   # the default pronoun sizes
        rep = problem.report(masks[1:], ["heldout"])
        assert rep["splits"]["heldout"]["masks"][0]["n_pruned"] == 4
    finally:
        problem.close()
        torch.set_num_threads(threads)
