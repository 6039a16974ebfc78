"""Benchmark metrics, computed the way the Flamingo paper and OpenFlamingo compute them.

* VQA accuracy (VQAv2, OK-VQA, TextVQA, VizWiz): official answer normalisation and the leave-one-out
  "min(#humans that said it / 3, 1)" accuracy; :func:`vqa_accuracy`, :func:`vqa_score`.
* Captioning (COCO, Flickr30k, VATEX, YouCook2): CIDEr, BLEU-4 and ROUGE-L from pycocoevalcap's own
  scorer classes, after PTB tokenisation; :func:`caption_metrics`.
* ROC-AUC (HatefulMemes): :func:`roc_auc`.
* Top-k accuracy (classification, close-ended tasks): :func:`topk_accuracy`.
* Recall@K (retrieval): :func:`recall_at_k`.
* Exact match after VQA normalisation (video QA top-1): :func:`exact_match_accuracy`.

Scales: functions ending in ``_score`` and :func:`caption_metrics` return percentages (0-100, as papers
report them); every other function returns a fraction in [0, 1].
"""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypedDict, TypeVar

import numpy as np

from flamingo_vlm.evaluation.text_normalization import (
    normalize_vqa_answer,
    process_punctuation,
    ptb_like_tokenize,
)

if TYPE_CHECKING:
    import torch

__all__ = [
    "CaptionScores",
    "caption_metrics",
    "exact_match_accuracy",
    "normalize_open_answer",
    "normalize_vqa_answer",
    "recall_at_k",
    "roc_auc",
    "topk_accuracy",
    "vqa_accuracy",
    "vqa_score",
]

_Key = TypeVar("_Key", bound=Hashable)
VQAProtocol = Literal["openflamingo", "official"]
CaptionTokenizer = Literal["auto", "ptb", "python"]

# --------------------------------------------------------------------------------------------------
# VQA
# --------------------------------------------------------------------------------------------------


def vqa_accuracy(
    prediction: str, gt_answers: Sequence[str], *, protocol: VQAProtocol = "openflamingo"
) -> float:
    """VQA accuracy of one predicted answer against the human answers, in [0, 1].

    With n >= 2 human answers (VQAv2 has 10): for each answer i, the accuracy against the *other* n - 1
    answers is ``min(#matches / 3, 1)``; the result is the mean over the n leave-one-out subsets. With
    10 answers, 0/1/2/3/>=4 matching answers give 0/0.3/0.6/0.9/1.0. With fewer answers the same formula
    is used, so with 2 or 3 answers the maximum is (n - 1) / 3 (e.g. 2/3 when all 3 match). With a single
    answer the formula would always give 0, so it is defined as exact match instead: 1.0 or 0.0.

    ``protocol`` selects how answers are normalised before comparing (the prediction is always fully
    normalised with :func:`normalize_vqa_answer`):

    * ``"openflamingo"`` (default, as in OpenFlamingo's ``vqa_metric.py``): every human answer is fully
      normalised too.
    * ``"official"`` (as in the VQA v2 ``vqaEval.py``, which assumes pre-normalised annotations): human
      answers are used as given when they all agree, and only punctuation-processed (no lower-casing,
      number words or articles) when they differ.

    Raises:
        ValueError: if ``gt_answers`` is empty, or ``protocol`` is unknown.
    """
    if isinstance(gt_answers, str):
        raise TypeError("gt_answers must be a sequence of answers, not a single string")
    answers = list(gt_answers)
    if not answers:
        raise ValueError("vqa_accuracy needs at least one ground-truth answer, got none")
    predicted = normalize_vqa_answer(prediction)
    if protocol == "openflamingo":
        answers = [normalize_vqa_answer(answer) for answer in answers]
    elif protocol == "official":
        if len(set(answers)) > 1:
            answers = [process_punctuation(answer) for answer in answers]
    else:
        raise ValueError(f"protocol must be 'openflamingo' or 'official', got {protocol!r}")

    if len(answers) == 1:
        return float(predicted == answers[0])
    total_matches = sum(answer == predicted for answer in answers)
    # Leaving out answer i removes one match exactly when answer i itself matches.
    accuracies = [min((total_matches - (answer == predicted)) / 3.0, 1.0) for answer in answers]
    return sum(accuracies) / len(accuracies)


def vqa_score(
    predictions: Sequence[str],
    gt_answers: Sequence[Sequence[str]],
    *,
    protocol: VQAProtocol = "openflamingo",
) -> float:
    """Mean :func:`vqa_accuracy` over questions, as a percentage (0-100), the number VQA papers report.

    Raises:
        ValueError: if the two sequences differ in length, are empty, or a question has no answers.
    """
    _check_same_length(predictions, gt_answers, "predictions", "gt_answers")
    accuracies = [
        vqa_accuracy(prediction, answers, protocol=protocol)
        for prediction, answers in zip(predictions, gt_answers, strict=True)
    ]
    return 100.0 * sum(accuracies) / len(accuracies)


def normalize_open_answer(answer: str) -> str:
    """Normalise a free-form answer (video QA, top-1 after normalisation): the VQA normalisation of
    :func:`normalize_vqa_answer` (lower-case, punctuation, number words, articles, contractions)."""
    return normalize_vqa_answer(answer)


def exact_match_accuracy(predictions: Sequence[str], answers: Sequence[str | Sequence[str]]) -> float:
    """Fraction (in [0, 1]) of predictions equal to their answer after :func:`normalize_open_answer`.

    Each element of ``answers`` is either one answer or a sequence of acceptable answers; a prediction
    counts as correct when it matches any of them.

    Raises:
        ValueError: if the sequences differ in length or are empty, or an answer list is empty.
    """
    _check_same_length(predictions, answers, "predictions", "answers")
    correct = 0
    for index, (prediction, accepted) in enumerate(zip(predictions, answers, strict=True)):
        options = [accepted] if isinstance(accepted, str) else list(accepted)
        if not options:
            raise ValueError(f"answers[{index}] is an empty list of acceptable answers")
        predicted = normalize_open_answer(prediction)
        correct += any(predicted == normalize_open_answer(option) for option in options)
    return correct / len(predictions)


# --------------------------------------------------------------------------------------------------
# Captioning
# --------------------------------------------------------------------------------------------------


# Keys as the harness reports them. "CIDEr": CIDEr-D (pycocoevalcap ``Cider``: n-grams 1..4, sigma 6,
# clipped counts, Gaussian length penalty). "BLEU-1".."BLEU-4": pycocoevalcap ``Bleu(4)`` (corpus BLEU,
# closest reference length). "ROUGE-L": pycocoevalcap ``Rouge`` (LCS F-measure, beta 1.2, mean over
# images). All multiplied by 100. "tokenizer": "ptb" (Stanford PTBTokenizer via Java) or "python"
# (:func:`ptb_like_tokenize`).
CaptionScores = TypedDict(
    "CaptionScores",
    {
        "CIDEr": float,
        "BLEU-1": float,
        "BLEU-2": float,
        "BLEU-3": float,
        "BLEU-4": float,
        "ROUGE-L": float,
        "tokenizer": Literal["ptb", "python"],
    },
)


def caption_metrics(
    predictions: Mapping[Hashable, str],
    references: Mapping[Hashable, Sequence[str]],
    tokenizer: CaptionTokenizer = "auto",
) -> CaptionScores:
    """COCO caption metrics (CIDEr, BLEU-1..4, ROUGE-L) computed with pycocoevalcap's scorers, x100.

    Returns ``{"CIDEr", "BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L": float, "tokenizer": str}``
    (see :data:`CaptionScores`).

    Args:
        predictions: one generated caption per image id.
        references: the reference captions per image id; the ids scored are exactly these.
        tokenizer: ``"ptb"``: pycocoevalcap's ``PTBTokenizer`` (Stanford CoreNLP, needs ``java`` on PATH),
            which is what COCO numbers in papers use. ``"python"``: :func:`ptb_like_tokenize`, a pure-Python
            imitation of it (same output on ordinary captions; may differ on rare constructs).
            ``"auto"``: ``"ptb"`` when ``java`` is found, else ``"python"``; if the Java run fails, it
            warns and falls back to ``"python"``. The returned ``"tokenizer"`` records which one ran.

    CIDEr's n-gram document frequencies come from the references passed in, so scores are only
    comparable between runs on the same reference set. SPICE and METEOR are not computed.

    Raises:
        ValueError: if an id with references has no prediction (or a prediction has no references), a
            reference list is empty, a caption is not a string, the inputs are empty, or ``tokenizer`` is
            unknown.
        RuntimeError: if ``tokenizer="ptb"`` and Java is unavailable or the Java tokenizer fails.
        ImportError: if pycocoevalcap is not installed.
    """
    if tokenizer not in ("auto", "ptb", "python"):
        raise ValueError(f"tokenizer must be 'auto', 'ptb' or 'python', got {tokenizer!r}")
    ids = _check_caption_inputs(predictions, references)
    Bleu, Cider, Rouge = _import_pycocoevalcap_scorers()

    # One tokenizer call for references and predictions together (one Java start-up); the keys keep
    # the two apart because PTBTokenizer groups its output by key.
    to_tokenize: dict[tuple[str, int], list[str]] = {}
    for position, image_id in enumerate(ids):
        to_tokenize[("ref", position)] = list(references[image_id])
        to_tokenize[("pred", position)] = [predictions[image_id]]

    used: Literal["ptb", "python"] = "python"
    tokenized: dict[tuple[str, int], list[str]] | None = None
    if tokenizer in ("auto", "ptb"):
        if shutil.which("java") is not None:
            try:
                tokenized = _ptb_tokenize(to_tokenize)
                used = "ptb"
            except (OSError, RuntimeError) as error:
                if tokenizer == "ptb":
                    raise RuntimeError(f"pycocoevalcap's PTBTokenizer failed: {error}") from error
                warnings.warn(
                    f"PTBTokenizer (Java) failed ({error}); using the pure-Python tokenizer instead",
                    RuntimeWarning,
                    stacklevel=2,
                )
        elif tokenizer == "ptb":
            raise RuntimeError(
                "tokenizer='ptb' needs Java ('java' not found on PATH); install a JRE or use "
                "tokenizer='python' / 'auto'"
            )
    if tokenized is None:
        tokenized = {key: [ptb_like_tokenize(c) for c in captions] for key, captions in to_tokenize.items()}

    # pycocoevalcap scorers take {id: [tokenized captions]} with exactly one hypothesis per id.
    gts = {position: tokenized[("ref", position)] for position in range(len(ids))}
    res = {position: tokenized[("pred", position)] for position in range(len(ids))}
    cider, _ = Cider().compute_score(gts, res)
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    rouge, _ = Rouge().compute_score(gts, res)
    return {
        "CIDEr": 100.0 * float(cider),
        "BLEU-1": 100.0 * float(bleu[0]),
        "BLEU-2": 100.0 * float(bleu[1]),
        "BLEU-3": 100.0 * float(bleu[2]),
        "BLEU-4": 100.0 * float(bleu[3]),
        "ROUGE-L": 100.0 * float(rouge),
        "tokenizer": used,
    }


def _check_caption_inputs(
    predictions: Mapping[Hashable, str], references: Mapping[Hashable, Sequence[str]]
) -> list[Hashable]:
    """Validate caption inputs; return the ids to score (the references' ids, in their order)."""
    if not references:
        raise ValueError("caption_metrics needs at least one image with references, got none")
    missing = [image_id for image_id in references if image_id not in predictions]
    if missing:
        raise ValueError(f"no prediction for image id {missing[0]!r} ({len(missing)} id(s) missing)")
    extra = [image_id for image_id in predictions if image_id not in references]
    if extra:
        raise ValueError(f"prediction for image id {extra[0]!r} has no references ({len(extra)} such id(s))")
    for image_id, refs in references.items():
        if isinstance(refs, str) or not all(isinstance(ref, str) for ref in refs):
            raise ValueError(f"references[{image_id!r}] must be a list of strings")
        if len(refs) == 0:
            raise ValueError(f"references[{image_id!r}] is empty")
        if not isinstance(predictions[image_id], str):
            raise ValueError(f"predictions[{image_id!r}] must be a string")
    return list(references)


def _import_pycocoevalcap_scorers() -> tuple[Any, Any, Any]:
    """Import the three scorer classes from their own modules.

    ``pycocoevalcap.eval`` is avoided on purpose: it imports the SPICE wrapper, whose use downloads
    Stanford models.
    """
    try:
        from pycocoevalcap.bleu.bleu import Bleu
        from pycocoevalcap.cider.cider import Cider
        from pycocoevalcap.rouge.rouge import Rouge
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("caption_metrics needs pycocoevalcap: pip install 'pycocoevalcap==1.2'") from error
    return Bleu, Cider, Rouge


def _ptb_tokenize(captions: Mapping[_Key, list[str]]) -> dict[_Key, list[str]]:
    """Run pycocoevalcap's Java ``PTBTokenizer`` over ``{key: [caption, ...]}``.

    PTBTokenizer puts one caption per line and re-pairs the output lines with keys by position, so a
    line break inside a caption would shift every later caption onto the wrong image: line breaks of any
    kind become spaces first. The output is checked to have the expected shape.
    """
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    request = {key: [{"caption": " ".join(c.splitlines())} for c in caps] for key, caps in captions.items()}
    result = PTBTokenizer().tokenize(request)
    for key, caps in captions.items():
        returned = len(result.get(key, ()))
        if returned != len(caps):
            raise RuntimeError(f"PTBTokenizer returned {returned} captions for {key!r}, expected {len(caps)}")
    return {key: result[key] for key in captions}


# --------------------------------------------------------------------------------------------------
# Classification, ROC-AUC, retrieval
# --------------------------------------------------------------------------------------------------


def roc_auc(scores: Sequence[float], labels: Sequence[int]) -> float:
    """Exact area under the ROC curve, in [0, 1].

    Computed as the Mann-Whitney U statistic with average ranks for tied scores: the probability that a
    random positive scores higher than a random negative, ties counting one half. Equals scikit-learn's
    ``roc_auc_score`` for binary labels.

    Args:
        scores: higher means "more likely positive"; any real numbers (not NaN).
        labels: 1 (positive) or 0 (negative); booleans are accepted.

    Raises:
        ValueError: if lengths differ, inputs are empty, a score is NaN, a label is not 0/1, or only one
            class is present.
    """
    score_array = _as_float_array(scores, "scores")
    label_array = np.asarray(labels)
    if score_array.ndim != 1 or label_array.ndim != 1 or len(score_array) != len(label_array):
        raise ValueError(
            f"scores and labels must be 1-D of equal length, got {score_array.shape} and {label_array.shape}"
        )
    if len(score_array) == 0:
        raise ValueError("roc_auc needs at least one score")
    if not np.all((label_array == 0) | (label_array == 1)):
        raise ValueError("labels must be 0 or 1")
    positive = label_array.astype(bool)
    n_positive = int(positive.sum())
    n_negative = len(positive) - n_positive
    if n_positive == 0 or n_negative == 0:
        raise ValueError("roc_auc is undefined when only one class is present in labels")
    ranks = _average_ranks(score_array)
    u_statistic = ranks[positive].sum() - n_positive * (n_positive + 1) / 2.0
    return float(u_statistic / (n_positive * n_negative))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of `values` (ascending), tied values sharing the mean of their ranks."""
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    # Start index of each run of equal values in sorted order.
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], len(values)]  # exclusive
    run_rank = (starts + 1 + ends) / 2.0  # mean of the ranks starts+1 .. ends
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat(run_rank, ends - starts)
    return ranks


def topk_accuracy(
    logits_or_scores: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor | Sequence[int], k: int
) -> float:
    """Fraction (in [0, 1]) of rows whose label is among the k highest-scoring classes.

    Ties are broken deterministically in favour of the lower class index (a stable descending sort), so
    a label tied with the k-th score counts only if its index is lower than the other tied classes'.

    Args:
        logits_or_scores: (N, C) scores, NumPy array or torch tensor (any device, any float dtype).
        labels: (N,) integer class indices in [0, C).
        k: 1 <= k <= C.

    Raises:
        ValueError: on wrong shapes, N = 0, k out of range, labels out of range, or NaN scores.
    """
    scores = _as_float_array(logits_or_scores, "logits_or_scores")
    label_array = _as_index_array(labels, "labels")
    if scores.ndim != 2:
        raise ValueError(f"logits_or_scores must have shape (N, C), got {scores.shape}")
    n_rows, n_classes = scores.shape
    if n_rows == 0:
        raise ValueError("topk_accuracy needs at least one row")
    if label_array.shape != (n_rows,):
        raise ValueError(f"labels must have shape ({n_rows},), got {label_array.shape}")
    if not 1 <= k <= n_classes:
        raise ValueError(f"k must be in [1, {n_classes}], got {k}")
    if label_array.min() < 0 or label_array.max() >= n_classes:
        raise ValueError(f"labels must be in [0, {n_classes})")
    # Rank of the label's class under "higher score first, lower index first on ties", without sorting.
    label_scores = scores[np.arange(n_rows), label_array][:, None]  # (N, 1)
    lower_index = np.arange(n_classes)[None, :] < label_array[:, None]  # (N, C)
    rank = (scores > label_scores).sum(axis=1) + ((scores == label_scores) & lower_index).sum(axis=1)  # (N,)
    return float(np.mean(rank < k))


def recall_at_k(
    similarity: np.ndarray | torch.Tensor,
    positives: Sequence[Iterable[int]] | Sequence[int],
    ks: Iterable[int] = (1, 5, 10),
) -> dict[int, float]:
    """Retrieval Recall@K: the fraction (in [0, 1]) of queries with at least one positive in their top K.

    Candidates are ranked by descending similarity; ties are broken in favour of the lower candidate
    index (stable sort), so results do not depend on the platform. A K larger than the number of
    candidates ranks all of them (Recall@K is then 1.0).

    Args:
        similarity: (Nq, Nc) query-candidate similarities (NumPy array or torch tensor).
        positives: per query, the index of its one positive candidate or a set of positive indices.
        ks: the cut-offs, each >= 1.

    Returns:
        ``{k: recall}`` for each k in ``ks``.

    Raises:
        ValueError: on shape mismatches, an empty positive set, indices out of range, k < 1 or NaN.
    """
    sims = _as_float_array(similarity, "similarity")
    if sims.ndim != 2 or sims.shape[0] == 0 or sims.shape[1] == 0:
        raise ValueError(f"similarity must have shape (Nq, Nc) with Nq, Nc >= 1, got {sims.shape}")
    n_queries, n_candidates = sims.shape
    if len(positives) != n_queries:
        raise ValueError(f"positives has {len(positives)} entries for {n_queries} queries")
    cutoffs = list(ks)
    if not cutoffs or any(int(k) != k or k < 1 for k in cutoffs):
        raise ValueError(f"ks must be positive integers, got {cutoffs}")

    # rank_of_best[q]: 0-based rank of query q's best-ranked positive, counted without a full sort.
    candidate_index = np.arange(n_candidates)
    rank_of_best = np.empty(n_queries, dtype=np.int64)
    for query, positive in enumerate(positives):
        indices = _positive_indices(positive)
        if len(indices) == 0:
            raise ValueError(f"query {query} has no positive candidate")
        if indices.min() < 0 or indices.max() >= n_candidates:
            raise ValueError(f"query {query} has a positive index outside [0, {n_candidates})")
        row = sims[query]
        # The best positive: highest similarity, lowest index among equals (the tie-break rule).
        best_score = row[indices].max()
        best = indices[row[indices] == best_score].min()
        ahead = (row > best_score) | ((row == best_score) & (candidate_index < best))
        rank_of_best[query] = int(ahead.sum())
    return {int(k): float(np.mean(rank_of_best < k)) for k in cutoffs}


def _positive_indices(positive: object) -> np.ndarray:
    """One query's positives (an index, or an iterable of indices) as a 1-D int64 array."""
    if isinstance(positive, (set, frozenset)):
        positive = sorted(positive)
    array = _to_numpy(positive)
    if array.dtype.kind not in "iu" and array.size:
        raise ValueError(f"positive candidate indices must be integers, got {positive!r}")
    return array.reshape(-1).astype(np.int64)


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


def _to_numpy(values: Any) -> np.ndarray:
    """A NumPy view/copy of a NumPy array, torch tensor (any device/dtype) or nested sequence."""
    if hasattr(values, "detach"):  # torch.Tensor, without importing torch here
        values = values.detach().cpu()
        if values.dtype.is_floating_point:
            values = values.double()  # bfloat16 has no NumPy dtype
        return values.numpy()
    return np.asarray(values)


def _as_float_array(values: object, name: str) -> np.ndarray:
    array = _to_numpy(values).astype(np.float64)
    if np.isnan(array).any():
        raise ValueError(f"{name} contains NaN")
    return array


def _as_index_array(values: object, name: str) -> np.ndarray:
    array = _to_numpy(values)
    if array.dtype.kind not in "iu":
        raise ValueError(f"{name} must be integers, got dtype {array.dtype}")
    return array.astype(np.int64)


def _check_same_length(
    first: Sequence[object], second: Sequence[object], first_name: str, second_name: str
) -> None:
    if len(first) != len(second):
        raise ValueError(f"{first_name} and {second_name} differ in length ({len(first)} vs {len(second)})")
    if len(first) == 0:
        raise ValueError(f"{first_name} is empty")
