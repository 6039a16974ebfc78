"""Tests for flamingo_vlm.evaluation.metrics and text_normalization.

Expected values are worked out by hand from the official definitions (VQA v2 ``vqaEval.py``,
pycocoevalcap, Mann-Whitney AUC) and written next to each case.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from flamingo_vlm.evaluation import metrics
from flamingo_vlm.evaluation.metrics import (
    caption_metrics,
    exact_match_accuracy,
    normalize_open_answer,
    normalize_vqa_answer,
    recall_at_k,
    roc_auc,
    topk_accuracy,
    vqa_accuracy,
    vqa_score,
)
from flamingo_vlm.evaluation.text_normalization import ptb_like_tokenize

HAS_JAVA = shutil.which("java") is not None

# --------------------------------------------------------------------------------------------------
# VQA answer normalisation
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("Two dogs.", "2 dogs"),  # final period removed, lower-cased, number word mapped
        ("yes!", "yes"),  # "!" not next to a space -> replaced by a space, then stripped by split
        ("the cat", "cat"),  # article removed
        ("An Apple", "apple"),
        ("A", ""),  # nothing but an article
        ("dont", "don't"),  # contraction table
        ("whats", "what's"),
        ("couldnt've", "couldn't've"),
        ("don't", "don't"),  # apostrophes are not punctuation here
        ("3,000", "3000"),  # official: a comma between digits is deleted
        ("1.5", "1.5"),  # a period followed by a digit stays
        ("5.", "5"),  # a period not followed by a digit goes
        ("a.m.", "am"),
        ("$5.00", "$5.00"),  # "$" is not in the official list
        ("ten", "10"),
        ("none", "0"),
        ("one way", "1 way"),
        ("eleven", "eleven"),  # only zero..ten are mapped
        ("t-shirt", "t shirt"),  # punctuation inside a word -> space
        ("red,blue", "red blue"),
        ("black - white", "black white"),  # punctuation with a space beside it -> deleted
        ("hi-fi 1,000", "hifi 1000"),  # a digit comma anywhere switches every mark to deletion
        ("(yes)", "yes"),
        ("isn't it?", "isn't it"),
        ("  Yes\n", "yes"),  # newline -> space, stripped
        ("No\tway", "no way"),  # tab -> space
        ("shed", "shed"),  # an ordinary word, not a contraction key
        ("wed", "wed"),
        ("." * 40, "." * 8),  # official quirk: at most 32 periods are removed
    ],
)
def test_normalize_vqa_answer(answer: str, expected: str) -> None:
    assert normalize_vqa_answer(answer) == expected


def test_normalize_open_answer_is_the_vqa_normalisation() -> None:
    assert normalize_open_answer("The Cat!") == "cat"
    assert normalize_open_answer("Three  people.") == "3 people"


# --------------------------------------------------------------------------------------------------
# VQA accuracy
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("matches", "expected"),
    [
        # 10 answers, m of them match. Leaving out a matching answer leaves m - 1 matches, leaving out
        # another leaves m: acc = (m * min((m-1)/3, 1) + (10-m) * min(m/3, 1)) / 10.
        (0, 0.0),
        (1, 0.3),  # (1*0 + 9*(1/3)) / 10
        (2, 0.6),  # (2*(1/3) + 8*(2/3)) / 10
        (3, 0.9),  # (3*(2/3) + 7*1) / 10
        (4, 1.0),  # (4*1 + 6*1) / 10
        (10, 1.0),
    ],
)
def test_vqa_accuracy_ten_answers(matches: int, expected: float) -> None:
    answers = ["cat"] * matches + ["dog"] * (10 - matches)
    assert vqa_accuracy("cat", answers) == pytest.approx(expected, abs=1e-12)


def test_vqa_accuracy_normalises_prediction_and_answers() -> None:
    answers = ["two", "2", "Two."] + ["three"] * 7  # all three normalise to "2"
    assert vqa_accuracy("Two!", answers) == pytest.approx(0.9)


def test_vqa_accuracy_fewer_than_ten_answers() -> None:
    # 3 answers, all matching: every subset has 2 matches -> 2/3.
    assert vqa_accuracy("cat", ["cat", "cat", "cat"]) == pytest.approx(2 / 3)
    # ["cat", "dog"]: leaving out "cat" leaves 0 matches, leaving out "dog" leaves 1 -> (0 + 1/3) / 2.
    assert vqa_accuracy("cat", ["cat", "dog"]) == pytest.approx(1 / 6)


def test_vqa_accuracy_single_answer_is_exact_match() -> None:
    assert vqa_accuracy("The cat.", ["cat"]) == 1.0
    assert vqa_accuracy("dog", ["cat"]) == 0.0


def test_vqa_accuracy_rejects_empty_and_string_answers() -> None:
    with pytest.raises(ValueError, match="at least one"):
        vqa_accuracy("cat", [])
    with pytest.raises(TypeError):
        vqa_accuracy("cat", "cat")
    with pytest.raises(ValueError, match="protocol"):
        vqa_accuracy("cat", ["cat"], protocol="vqa")  # type: ignore[arg-type]


def test_vqa_accuracy_official_protocol_leaves_answers_alone() -> None:
    # Official vqaEval.py: unanimous answers are compared as given, so "Two" never equals the normalised
    # prediction "2"; OpenFlamingo normalises them and gives full credit.
    assert vqa_accuracy("two", ["Two"] * 10, protocol="official") == 0.0
    assert vqa_accuracy("two", ["Two"] * 10, protocol="openflamingo") == 1.0
    # Disagreeing answers only get punctuation processing: "two" stays "two" (no number mapping).
    answers = ["two"] * 5 + ["three"] * 5
    assert vqa_accuracy("two", answers, protocol="official") == 0.0
    assert vqa_accuracy("two", answers, protocol="openflamingo") == 1.0
    # Punctuation processing of disagreeing answers: "t-shirt" -> "t shirt" matches the prediction.
    assert vqa_accuracy("t shirt", ["t-shirt"] * 3 + ["shirt"] * 7, protocol="official") == pytest.approx(0.9)


def test_vqa_score_is_mean_times_100() -> None:
    score = vqa_score(["2", "no", "cat"], [["two"] * 10, ["yes"] * 10, ["cat"] + ["dog"] * 9])
    assert score == pytest.approx(100 * (1.0 + 0.0 + 0.3) / 3)


def test_vqa_score_rejects_mismatched_or_empty_inputs() -> None:
    with pytest.raises(ValueError, match=r"differ in length \(1 vs 2\)"):
        vqa_score(["a"], [["a"], ["b"]])
    with pytest.raises(ValueError, match="empty"):
        vqa_score([], [])


def test_exact_match_accuracy() -> None:
    predictions = ["The cat.", "Two", "dog"]
    answers = ["cat", ["2", "two dogs"], "cat"]  # a list means "any of these"
    assert exact_match_accuracy(predictions, answers) == pytest.approx(2 / 3)


def test_exact_match_accuracy_errors() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        exact_match_accuracy(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="empty"):
        exact_match_accuracy(["a"], [[]])


# --------------------------------------------------------------------------------------------------
# Pure-Python PTB-like tokenizer
# --------------------------------------------------------------------------------------------------

# (caption, what pycocoevalcap's Java PTBTokenizer returns for it) -- outputs recorded from the Java run.
PTB_CASES = [
    ("A man riding a wave on top of a surfboard.", "a man riding a wave on top of a surfboard"),
    ("The dog's toy isn't red; it's blue!", "the dog 's toy is n't red it 's blue"),
    ("He said \"hello\" and 'bye' ... ok?", "he said hello and bye ok"),
    ("A t-shirt -- with 3.5 and 1,000 items: cats/dogs & mice.", "a t-shirt with 3.5 and 1,000 items cats/dogs & mice"),
    ("Two dogs (brown) in [a] {b}.", "two dogs -lrb- brown -rrb- in -lsb- a -rsb- -lcb- b -rcb-"),
    ("Mr. Smith went to the U.S. today.", "mr. smith went to the u.s. today"),
    ("What a jump!!", "what a jump !!"),
    ("gonna wanna cannot", "gon na wan na can not"),
    ("o'clock ma'am rock'n'roll", "o'clock ma'am rock 'n' roll"),
    ("the cats' toys", "the cats toys"),
    ("\u201ccurly\u201d \u2018quotes\u2019 \u2014 dash\u2026", "curly quotes dash"),
    ("pages 10\u201320, well\u2014known", "pages 10 20 well known"),  # en/em dashes split words
    ("A 10% discount for $20 at 5:30", "a 10 % discount for $ 20 at 5:30"),
    ("a cat , on a mat .", "a cat on a mat"),
    ("a cat \U0001f600 on a mat", "a cat on a mat"),
    ("plan b. the end", "plan b. the end"),
    ("Plan B. The end", "plan b the end"),
    ("A pizza with 1/2 cheese", "a pizza with 1/2 cheese"),
    ("", ""),
    ("  .  ", ""),
]  # fmt: skip


@pytest.mark.parametrize(("caption", "expected"), PTB_CASES)
def test_ptb_like_tokenize(caption: str, expected: str) -> None:
    assert ptb_like_tokenize(caption) == expected


def test_ptb_like_tokenize_joins_lines() -> None:
    assert ptb_like_tokenize("line one\nline two\r\n") == "line one line two"


# Caption-style sentences for the Java comparison below (COCO-like references with assorted punctuation).
CONFORMANCE_CAPTIONS = [caption for caption, _ in PTB_CASES] + [
    "A woman marking a cake with the back of a chef's knife. ",
    "The bathroom has a toilet, sink, and shower/tub combo.",
    'A "STOP" sign on the corner of a street.',
    "The sign reads 'Main St.' in white letters.",
    "An older man (wearing glasses) reads the newspaper.",
    "Two people -- one holding an umbrella -- walk in the rain.",
    "The clock reads 10:30 on a tower.",
    "People at a farmer's market buying fruits & vegetables.",
    "Kids' toys are scattered around the living room.",
    "Is this a bird? Yes, it is.",
    "A TRAIN TRAVELING DOWN TRACKS NEXT TO A FOREST.",
    "There's a dog and a cat; I don't think that's a real horse.",
    "A black-and-white photo of a 1950's car.",
    "A large jet is flying at 30,000 ft. over Calif.",
    "An old-fashioned street lamp on Fifth Ave. in N.Y.C.",
    "A plane that is 100% ready for take-off.",
    "a toilet with it 's seat up",
    "A man wearing a #23 jersey and a cap (etc.)",
]


@pytest.mark.skipif(not HAS_JAVA, reason="needs Java for pycocoevalcap's PTBTokenizer")
def test_ptb_like_tokenize_agrees_with_java_ptbtokenizer() -> None:
    ptbtokenizer = pytest.importorskip("pycocoevalcap.tokenizer.ptbtokenizer")
    request = {i: [{"caption": caption}] for i, caption in enumerate(CONFORMANCE_CAPTIONS)}
    java = ptbtokenizer.PTBTokenizer().tokenize(request)
    differences = {
        caption: (java[i][0], ptb_like_tokenize(caption))
        for i, caption in enumerate(CONFORMANCE_CAPTIONS)
        if java[i][0] != ptb_like_tokenize(caption)
    }
    assert differences == {}


# --------------------------------------------------------------------------------------------------
# Caption metrics
# --------------------------------------------------------------------------------------------------

REFERENCES = {
    "img-1": ["A man riding a wave on top of a surfboard.", "A surfer rides a large wave in the ocean."],
    "img-2": [
        "Two dogs playing with a frisbee in the park.",
        "A couple of dogs chase a frisbee on the grass.",
    ],
    "img-3": [
        "A plate of food with broccoli, rice, and chicken.",
        "A dinner plate with chicken and vegetables.",
    ],
    "img-4": ["A red double decker bus on a city street.", "A bus driving down a busy road."],
}
PREDICTIONS = {
    "img-1": "a man riding a wave on a surfboard",
    "img-2": "two dogs playing in the park",
    "img-3": "a plate of food with broccoli and rice",
    "img-4": "a cat sleeping on a couch",
}


def test_caption_metrics_equal_pycocoevalcap_scorers() -> None:
    pytest.importorskip("pycocoevalcap")
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    gts = {key: [ptb_like_tokenize(ref) for ref in refs] for key, refs in REFERENCES.items()}
    res = {key: [ptb_like_tokenize(PREDICTIONS[key])] for key in REFERENCES}
    expected_cider, _ = Cider().compute_score(gts, res)
    expected_bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    expected_rouge, _ = Rouge().compute_score(gts, res)

    scores = caption_metrics(PREDICTIONS, REFERENCES, tokenizer="python")
    assert scores["tokenizer"] == "python"
    assert scores["CIDEr"] == pytest.approx(100 * expected_cider, rel=1e-12)
    assert scores["BLEU-4"] == pytest.approx(100 * expected_bleu[3], rel=1e-12)
    assert scores["BLEU-1"] == pytest.approx(100 * expected_bleu[0], rel=1e-12)
    assert scores["ROUGE-L"] == pytest.approx(100 * expected_rouge, rel=1e-12)
    assert scores["CIDEr"] > 0
    for key in ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L"):
        assert 0 < scores[key] < 100
    # BLEU-n is non-increasing in n.
    assert scores["BLEU-1"] >= scores["BLEU-2"] >= scores["BLEU-3"] >= scores["BLEU-4"]


def test_caption_metrics_perfect_and_disjoint_predictions() -> None:
    pytest.importorskip("pycocoevalcap")
    references = {i: [caption] for i, caption in enumerate(
        ["a man riding a wave on a surfboard", "two dogs playing in the park", "a red bus on a city street"]
    )}  # fmt: skip
    perfect = caption_metrics({i: refs[0] for i, refs in references.items()}, references, tokenizer="python")
    # Identical n-gram vectors: cosine 1 for n = 1..4, no length penalty, x10 inside CIDEr -> 10 -> 1000.
    assert perfect["CIDEr"] == pytest.approx(1000.0)
    assert perfect["BLEU-4"] == pytest.approx(100.0, abs=1e-4)  # pycocoevalcap's smoothing constants
    assert perfect["ROUGE-L"] == pytest.approx(100.0)
    disjoint = caption_metrics({i: "xyzzy plugh" for i in references}, references, tokenizer="python")
    assert disjoint["CIDEr"] == 0.0
    assert disjoint["ROUGE-L"] == 0.0
    assert disjoint["BLEU-4"] == pytest.approx(0.0, abs=1e-4)


def test_caption_metrics_missing_or_extra_prediction_names_the_id() -> None:
    pytest.importorskip("pycocoevalcap")
    predictions = {key: value for key, value in PREDICTIONS.items() if key != "img-3"}
    with pytest.raises(ValueError, match="'img-3'"):
        caption_metrics(predictions, REFERENCES, tokenizer="python")
    with pytest.raises(ValueError, match="'img-9'"):
        caption_metrics({**PREDICTIONS, "img-9": "a dog"}, REFERENCES, tokenizer="python")
    with pytest.raises(ValueError, match="empty"):
        caption_metrics({"a": "a dog"}, {"a": []}, tokenizer="python")
    with pytest.raises(ValueError):
        caption_metrics({}, {}, tokenizer="python")
    with pytest.raises(ValueError, match="tokenizer"):
        caption_metrics(PREDICTIONS, REFERENCES, tokenizer="spacy")  # type: ignore[arg-type]


def test_caption_metrics_without_java(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("pycocoevalcap")
    monkeypatch.setattr(metrics.shutil, "which", lambda name: None)
    assert caption_metrics(PREDICTIONS, REFERENCES)["tokenizer"] == "python"
    with pytest.raises(RuntimeError, match="Java"):
        caption_metrics(PREDICTIONS, REFERENCES, tokenizer="ptb")


@pytest.mark.skipif(not HAS_JAVA, reason="needs Java for pycocoevalcap's PTBTokenizer")
def test_caption_metrics_with_java_ptb_tokenizer() -> None:
    pytest.importorskip("pycocoevalcap")
    ptb = caption_metrics(PREDICTIONS, REFERENCES, tokenizer="ptb")
    assert ptb["tokenizer"] == "ptb"
    assert caption_metrics(PREDICTIONS, REFERENCES)["tokenizer"] == "ptb"  # "auto" picks Java
    # On these captions both tokenizers produce the same tokens, hence the same scores.
    python = caption_metrics(PREDICTIONS, REFERENCES, tokenizer="python")
    for key in ("CIDEr", "BLEU-4", "ROUGE-L"):
        assert ptb[key] == pytest.approx(python[key], rel=1e-12)
    # Java also breaks lines at "\r", "\u2028", ...; unless removed, such a character in a caption
    # shifts every later caption onto the wrong image (pycocoevalcap itself only replaces "\n").
    for line_break in ("\n", "\r", "\u2028", "\x0c"):
        broken = {**PREDICTIONS, "img-1": f"a man riding{line_break}a wave on a surfboard"}
        assert caption_metrics(broken, REFERENCES, tokenizer="ptb")["CIDEr"] == pytest.approx(ptb["CIDEr"])


# --------------------------------------------------------------------------------------------------
# ROC-AUC
# --------------------------------------------------------------------------------------------------


def _pairwise_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Reference: P(score_pos > score_neg) + 0.5 * P(tie), over all positive-negative pairs."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(wins / (len(pos) * len(neg)))


@pytest.mark.parametrize(
    ("scores", "labels", "expected"),
    [
        ([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1], 0.75),  # pairs won: 0.35>0.1, 0.8>0.1, 0.8>0.4 -> 3/4
        ([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1], 1.0),
        ([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1], 0.0),
        ([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1], 0.5),  # every pair tied
        ([0.5, 0.5, 0.2, 0.9], [1, 0, 0, 1], 0.875),  # (0.5 vs 0.5)=1/2, three wins -> 3.5/4
        ([3, 1, 2], [True, False, True], 1.0),  # booleans as labels
    ],
)
def test_roc_auc_hand_cases(scores: list[float], labels: list[int], expected: float) -> None:
    assert roc_auc(scores, labels) == pytest.approx(expected)


def test_roc_auc_matches_pairwise_definition_with_many_ties() -> None:
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, size=300).astype(float)  # heavy ties
    labels = rng.integers(0, 2, size=300)
    assert roc_auc(scores, labels) == pytest.approx(_pairwise_auc(scores, labels), abs=1e-12)


def test_roc_auc_errors() -> None:
    with pytest.raises(ValueError, match="one class"):
        roc_auc([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="0 or 1"):
        roc_auc([0.1, 0.2], [0, 2])
    with pytest.raises(ValueError, match="equal length"):
        roc_auc([0.1, 0.2], [0, 1, 1])
    with pytest.raises(ValueError, match="NaN"):
        roc_auc([0.1, float("nan")], [0, 1])


# --------------------------------------------------------------------------------------------------
# Top-k accuracy
# --------------------------------------------------------------------------------------------------

SCORES = np.array(
    [
        [0.1, 0.7, 0.2],  # order 1, 2, 0
        [0.5, 0.3, 0.2],  # order 0, 1, 2
        [0.2, 0.3, 0.5],  # order 2, 1, 0
        [0.6, 0.1, 0.3],  # order 0, 2, 1
    ]
)
LABELS = np.array([1, 1, 0, 1])  # label ranks: 0, 1, 2, 2


@pytest.mark.parametrize(("k", "expected"), [(1, 0.25), (2, 0.5), (3, 1.0)])
def test_topk_accuracy(k: int, expected: float) -> None:
    assert topk_accuracy(SCORES, LABELS, k) == pytest.approx(expected)


def test_topk_accuracy_accepts_torch_tensors() -> None:
    for dtype in (torch.float32, torch.bfloat16):
        assert topk_accuracy(torch.tensor(SCORES, dtype=dtype), torch.tensor(LABELS), 2) == pytest.approx(0.5)


def test_topk_accuracy_ties_prefer_lower_class_index() -> None:
    tied = np.ones((1, 3))
    assert topk_accuracy(tied, [0], 1) == 1.0
    assert topk_accuracy(tied, [2], 1) == 0.0
    assert topk_accuracy(tied, [2], 2) == 0.0
    assert topk_accuracy(tied, [2], 3) == 1.0


def test_topk_accuracy_errors() -> None:
    with pytest.raises(ValueError, match="k must be"):
        topk_accuracy(SCORES, LABELS, 0)
    with pytest.raises(ValueError, match="k must be"):
        topk_accuracy(SCORES, LABELS, 4)
    with pytest.raises(ValueError, match="labels must be in"):
        topk_accuracy(SCORES, np.array([0, 1, 2, 3]), 1)
    with pytest.raises(ValueError, match="shape"):
        topk_accuracy(SCORES[0], LABELS[:1], 1)
    with pytest.raises(ValueError, match="integers"):
        topk_accuracy(SCORES, LABELS.astype(float), 1)


# --------------------------------------------------------------------------------------------------
# Recall@K
# --------------------------------------------------------------------------------------------------

SIMILARITY = np.array(
    [
        [0.9, 0.1, 0.5, 0.3],  # positive 0 ranked first
        [0.2, 0.8, 0.1, 0.4],  # positives {0, 3}: 3 is ranked second, 0 third -> best rank 1
        [0.1, 0.2, 0.3, 0.4],  # positive 0 ranked last (rank 3)
    ]
)


def test_recall_at_k_hand_case() -> None:
    recalls = recall_at_k(SIMILARITY, [0, {0, 3}, 0], ks=(1, 2, 3, 4))
    assert recalls == pytest.approx({1: 1 / 3, 2: 2 / 3, 3: 2 / 3, 4: 1.0})


def test_recall_at_k_default_ks_and_torch_input() -> None:
    # Only 4 candidates: K = 5 and 10 rank every candidate.
    recalls = recall_at_k(torch.tensor(SIMILARITY), [[0], [0, 3], [0]])
    assert recalls == pytest.approx({1: 1 / 3, 5: 1.0, 10: 1.0})


def test_recall_at_k_ties_prefer_lower_candidate_index() -> None:
    tied = np.full((1, 3), 0.5)
    assert recall_at_k(tied, [0], ks=(1,))[1] == 1.0
    assert recall_at_k(tied, [1], ks=(1, 2)) == {1: 0.0, 2: 1.0}


def test_recall_at_k_matches_stable_sort_reference() -> None:
    rng = np.random.default_rng(1)
    sims = rng.integers(0, 4, size=(50, 20)).astype(float)  # many ties
    positives = [set(rng.choice(20, size=rng.integers(1, 4), replace=False).tolist()) for _ in range(50)]
    order = np.argsort(-sims, axis=1, kind="stable")
    for k in (1, 3, 7):
        expected = np.mean([bool(set(order[q, :k].tolist()) & positives[q]) for q in range(50)])
        assert recall_at_k(sims, positives, ks=(k,))[k] == pytest.approx(expected)


def test_recall_at_k_errors() -> None:
    with pytest.raises(ValueError, match="no positive"):
        recall_at_k(SIMILARITY, [0, set(), 1])
    with pytest.raises(ValueError, match="outside"):
        recall_at_k(SIMILARITY, [0, 4, 1])
    with pytest.raises(ValueError, match="entries"):
        recall_at_k(SIMILARITY, [0, 1])
    with pytest.raises(ValueError, match="ks"):
        recall_at_k(SIMILARITY, [0, 1, 2], ks=(0,))
