"""Zero-shot multiple-choice accuracy: the loader and its errors, split cutting, the joined text and
its scored tokens, hand-checked accuracy figures, and the scores of tiny random models."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from objectives.masked_lm.data import SPLITS
from objectives.masked_lm.masking import HeadMasker
from objectives.masked_lm.multiple_choice import (
    ChoiceItem,
    ChoiceScores,
    accuracy_figures,
    choice_items_digest,
    choice_scores,
    cut_choice_splits,
    encode_choices,
    join_choice,
    load_choice_file,
)


def _write(path, rows) -> str:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def _rows(n=6):
    return [{"context": f"w{4 + i} w{5 + i}", "choices": ["w10", "w11 w12", "w13"], "label": i % 3} for i in range(n)]


# --------------------------------------------------------------------------------- loader
def test_load_choice_file_reads_items_labels_ids_and_custom_keys(tmp_path):
    rows = _rows()
    rows[1] = {"context": "w5 w6", "choices": ["w10", "w11 w12"], "label": "w11 w12", "id": 42}
    path = _write(tmp_path / "mc.jsonl", rows[:3] + [""] + rows[3:])  # a blank line is skipped
    items = load_choice_file(path)
    assert len(items) == 6
    assert items[0] == ChoiceItem("w4 w5", ("w10", "w11 w12", "w13"), 0, "mc.jsonl:1")
    assert items[1].label == 1 and items[1].item == "42"
    assert items[3].item == "mc.jsonl:5"  # names count file lines, blank ones included
    renamed = [{"q": r["context"], "opts": r["choices"], "answer": r["label"]} for r in _rows()]
    again = load_choice_file(_write(tmp_path / "renamed.jsonl", renamed), context="q", choices="opts", label="answer")
    assert [it.label for it in again] == [0, 1, 2, 0, 1, 2]
    assert choice_items_digest(again) != choice_items_digest(items)
    assert choice_items_digest(again) == choice_items_digest(list(again))


@pytest.mark.parametrize(("line", "match"), [
    ('{"context": "w4", "choices": ["w5", "w6"], "label": 0', r"bad\.jsonl:3: not valid JSON"),
    ({"context": "w4", "options": ["w5", "w6"], "label": 0}, r":3: missing key\(s\) \['choices'\]; keys found: "
                                                             r"\['context', 'label', 'options'\]"),
    ({"context": "w4", "choices": ["w5"], "label": 0}, r":3: 'choices' has 1 choice\(s\); need >= 2"),
    ({"context": "w4", "choices": ["w5", "w6"], "label": 2}, r":3: 'label' 2 is out of range for 2 choices"),
    ({"context": "w4", "choices": ["w5", "w6"], "label": -1}, r":3: 'label' -1 is out of range"),
    ({"context": "w4", "choices": ["w5", "w6"], "label": "w7"}, r":3: 'label' 'w7' is not one of the 2 choices"),
    ({"context": "w4", "choices": ["w5", "w6"], "label": True}, r":3: 'label' must be a 0-based choice index"),
    ({"context": "  ", "choices": ["w5", "w6"], "label": 0}, r":3: 'context' must be a non-empty string"),
    ({"context": "w4", "choices": ["w5", " "], "label": 0}, r":3: 'choices' has empty choice\(s\) at index \[1\]"),
    ({"context": "w4", "choices": ["w5", 6], "label": 0}, r":3: 'choices' must be a list of strings"),
    ({"context": "w4", "choices": ["w5", "w5"], "label": 0}, r":3: 'choices' has duplicate choices"),
    ({"context": "w4", "choices": ["w5", "w6"], "label": 0, "id": "a"}, r":3: item id 'a' already used on line 1"),
    ("[1, 2]", r":3: expected a JSON object, got list"),
])
def test_load_choice_file_errors_name_file_line_and_expectation(tmp_path, line, match):
    rows = _rows()
    rows[0]["id"] = "a"
    path = _write(tmp_path / "bad.jsonl", rows[:2] + [line] + rows[2:])
    with pytest.raises(ValueError, match=match):
        load_choice_file(path)


def test_load_choice_file_missing_file_and_too_few_items(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.jsonl.*does not exist"):
        load_choice_file(tmp_path / "nope.jsonl")
    with pytest.raises(ValueError, match=r"few\.jsonl: 5 items; need >= 6"):
        load_choice_file(_write(tmp_path / "few.jsonl", _rows(5)))


# --------------------------------------------------------------------------------- splits
def test_cut_choice_splits_disjoint_complete_balanced_and_deterministic():
    items = [ChoiceItem(f"c{i}", ("a", "b"), 0, f"q{i}") for i in range(10)]
    splits = cut_choice_splits(items, seed=3)
    assert tuple(splits) == SPLITS
    names = [[it.item for it in splits[s]] for s in SPLITS]
    assert sorted(sum(names, [])) == sorted(it.item for it in items)  # disjoint and complete
    assert sorted(len(n) for n in names) == [3, 3, 4]
    assert all(n == sorted(n, key=lambda x: int(x[1:])) for n in names)  # file order kept
    assert cut_choice_splits(items, seed=3) == splits
    assert any(cut_choice_splits(items, seed=s) != splits for s in range(4, 8))
    with pytest.raises(ValueError, match="2 distinct items; need >= 3"):
        cut_choice_splits(items[:2])


def test_cut_choice_splits_keeps_items_of_one_name_together():
    items = [ChoiceItem(f"c{i}", ("a", "b"), 0, f"q{i // 2}") for i in range(12)]
    for seed in range(5):
        for part in cut_choice_splits(items, seed=seed).values():
            assert all(sum(it.item == x.item for x in part) == 2 for it in part)


# ------------------------------------------------------------------------- text and tokens
def test_join_choice_adds_one_space_unless_there_is_one():
    assert join_choice("Q: capital?", "Paris") == ("Q: capital? Paris", 11)
    assert join_choice("Q: capital?", " Paris") == ("Q: capital? Paris", 11)
    assert join_choice("Answer: ", "Paris") == ("Answer: Paris", 7)  # the context's trailing space moves over
    assert join_choice("Answer:\n", "Paris") == ("Answer:\nParis", 7)


@pytest.mark.parametrize("trim_offsets", [True, False])
def test_byte_level_bpe_scores_the_whole_first_token_of_the_choice(trim_offsets):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=trim_offsets)  # GPT-2's own file: False
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(["The capital of France is Paris.", "Answer: Paris, London or Berlin"] * 5, trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>")
    items = [ChoiceItem("Answer: ", ("Paris", "London"), 0, "a"),
             ChoiceItem("The capital is", (" Berlin", "Paris"), 0, "b")]
    enc = encode_choices(tok, items, batch_size=3)
    assert enc.texts == ("Answer: Paris", "Answer: London", "The capital is Berlin", "The capital is Paris")
    scored = {}
    row = 0
    for ids, att, aft in enc.sentences.batches:
        for r in range(ids.shape[0]):
            k = int(enc.sentences.order[row + r])
            scored[enc.texts[k]] = tok.decode(ids[r][aft[r] & att[r].bool()].tolist())
        row += ids.shape[0]
    assert scored == {t: " " + t.split()[-1] for t in enc.texts}
    assert enc.n_tokens.tolist() == [[len(tok(" Paris")["input_ids"]), len(tok(" London")["input_ids"])],
                                     [len(tok(" Berlin")["input_ids"]), len(tok(" Paris")["input_ids"])]]


# ----------------------------------------------------------------------------- aggregates
def test_accuracy_figures_by_hand():
    scores = np.array([[0.1, 0.5, 0.2],      # picks 1, right
                       [0.9, 0.1, -np.inf],  # picks 0, right (an item with two choices)
                       [0.3, 0.2, 0.1],      # picks 0, wrong
                       [0.0, 0.0, 1.0]])     # picks 2, right
    labels = np.array([1, 0, 2, 2])
    base = np.array([[0.5, 0.1, 0.2], [0.9, 0.1, -np.inf], [0.3, 0.2, 0.1], [1.0, 1.0, 0.0]])  # right on item 1 only
    fig = accuracy_figures(scores, labels)
    # correctness 1,1,0,1: mean 3/4, sample variance (3 * 1/16 + 9/16) / 3 = 1/4, SE sqrt(1/4 / 4) = 1/4
    assert fig == {"accuracy": 0.75, "accuracy_se": pytest.approx(0.25), "n_items": 4}
    paired = accuracy_figures(scores, labels, base)
    # differences 1,0,0,1: mean 1/2, sample variance 4 * 1/4 / 3 = 1/3, SE sqrt(1/12)
    assert paired["base_accuracy"] == 0.25 and paired["accuracy_change"] == 0.5
    assert paired["accuracy_change_se"] == pytest.approx(np.sqrt(1 / 12))
    same = accuracy_figures(scores, labels, scores)
    assert same["accuracy_change"] == 0.0 and same["accuracy_change_se"] == 0.0


def test_accuracy_figures_normalization_and_errors():
    s = ChoiceScores(total=np.array([[-2.0, -3.0]]), per_token=np.array([[-2.0, -1.0]]), n_tokens=np.array([[1, 3]]))
    assert accuracy_figures(s, np.array([0]), normalize="sum")["accuracy"] == 1.0
    assert accuracy_figures(s, np.array([0]), normalize="token")["accuracy"] == 0.0
    assert accuracy_figures(s, np.array([0]))["accuracy_se"] == 0.0
    with pytest.raises(ValueError, match="normalize must be one of"):
        accuracy_figures(s, np.array([0]), normalize="char")
    with pytest.raises(ValueError, match=r"labels must be int\[1\]"):
        accuracy_figures(s, np.array([0, 1]))
    with pytest.raises(ValueError, match="labels must index a scored choice"):
        accuracy_figures(np.array([[0.0, -np.inf]]), np.array([1]))
    with pytest.raises(ValueError, match="contain NaN"):
        accuracy_figures(np.array([[0.0, np.nan]]), np.array([0]))
    with pytest.raises(ValueError, match="base_scores shape"):
        accuracy_figures(np.zeros((2, 2)), np.array([0, 0]), np.zeros((2, 3)))


# ------------------------------------------------------------------------- forward passes
ITEMS = [
    ChoiceItem("w4 w5 w6", ("w7", "w8 w9", "w10 w11 w12"), 1, "a"),
    ChoiceItem("w13", ("w14 w15", "w16"), 0, "b"),
    ChoiceItem("w17 w18 w19 w20 w21", ("w22", "w23"), 1, "c"),
    ChoiceItem("w24 w25", ("w26 w27 w28 w29", "w30", "w31 w32"), 2, "d"),
]


def _direct_scores(model, tokenizer, items) -> np.ndarray:
    """Each sequence alone, unpadded: the summed log-softmax of its choice's tokens."""
    out = np.full((len(items), 3), -np.inf)
    with torch.no_grad():
        for i, it in enumerate(items):
            for j, choice in enumerate(it.choices):
                ids = [tokenizer.bos_token_id] + tokenizer(join_choice(it.context, choice)[0],
                                                           add_special_tokens=False)["input_ids"]
                n_choice = len(tokenizer(choice, add_special_tokens=False)["input_ids"])
                lp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0, :-1].float(), -1)
                target = lp.gather(-1, torch.tensor(ids[1:])[:, None])[:, 0]
                out[i, j] = float(target[-n_choice:].double().sum())
    return out


@pytest.mark.parametrize("model_type", ["gpt2", "llama"])
def test_choice_scores_equal_a_direct_computation(build_tiny, tiny_tokenizer, model_type):
    model = build_tiny(model_type)
    enc = encode_choices(tiny_tokenizer, ITEMS, batch_size=3)  # several padded batches
    assert enc.n_items == 4 and enc.max_choices == 3 and enc.labels.tolist() == [1, 0, 1, 2]
    assert enc.n_tokens.tolist() == [[1, 2, 3], [2, 1, 0], [1, 1, 0], [4, 1, 2]]
    scores = choice_scores(model, enc)
    direct = _direct_scores(model, tiny_tokenizer, ITEMS)
    assert np.array_equal(np.isinf(scores.total), np.isinf(direct))
    finite = np.isfinite(direct)
    np.testing.assert_allclose(scores.total[finite], direct[finite], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(scores.per_token[finite], (direct / np.maximum(enc.n_tokens, 1))[finite], rtol=1e-5)
    assert (scores.per_token[~finite] == -np.inf).all()
    fig = accuracy_figures(scores, enc.labels)
    assert fig["n_items"] == 4 and 0.0 <= fig["accuracy"] <= 1.0


def test_head_masks_change_scores_and_keep_all_is_bit_identical(build_tiny, tiny_tokenizer):
    model = build_tiny("gpt2")
    enc = encode_choices(tiny_tokenizer, ITEMS, batch_size=3)
    plain = choice_scores(model, enc)
    assert np.array_equal(choice_scores(model, enc).total, plain.total)  # same batches, same bits
    masker = HeadMasker(model)
    try:
        with masker.masked(np.ones(masker.dim, dtype=bool)):
            ones = choice_scores(model, enc)
        off = np.ones(masker.dim, dtype=bool)
        off[1] = False
        with masker.masked(off):
            pruned = choice_scores(model, enc)
    finally:
        masker.remove()
    assert np.array_equal(ones.total, plain.total) and np.array_equal(ones.per_token, plain.per_token)
    finite = np.isfinite(plain.total)
    assert not np.allclose(pruned.total[finite], plain.total[finite])
    paired = accuracy_figures(pruned, enc.labels, plain)
    assert paired["base_accuracy"] == accuracy_figures(plain, enc.labels)["accuracy"]
