"""One evaluator per task: load its data, build few-shot prompts, batch them, generate or score, compute the metric.

An evaluator is built once per task (data loaded, demonstration selector and RICES features prepared) and
then run for each (shots, seed) of a sweep on a fixed list of query indices:

* open-ended tasks (captioning, VQA, video QA) generate with beam search (3 beams by default), stopping at
  ``<|endofchunk|>``; the decoded text is cut where the model starts a next example (``"Question:"``, ...)
  and scored with ``metrics``;
* close-ended tasks (classification, HatefulMemes, retrieval) score every candidate continuation's
  log-likelihood with the prompt run once, optionally averaged over several demonstration orderings.

Every k-shot prompt is k demonstrations followed by the query; 0-shot prompts hold two text-only
demonstrations (``prompts.ZERO_SHOT_DEMOS``), drawn at random in every demo mode (RICES would show the answers of
the query's nearest neighbours).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from flamingo_vlm.evaluation import datasets as data
from flamingo_vlm.evaluation.batching import PromptBatcher
from flamingo_vlm.evaluation.demos import (
    DemoSelector,
    FeatureFn,
    RandomDemos,
    RicesDemos,
    cached_features,
    exclusions,
    model_fingerprint,
    vision_feature_fn,
)
from flamingo_vlm.evaluation.metrics import (
    caption_metrics,
    exact_match_accuracy,
    recall_at_k,
    roc_auc,
    topk_accuracy,
    vqa_score,
)
from flamingo_vlm.evaluation.prompts import ZERO_SHOT_DEMOS, PromptTemplate, build_prompt, clean_generation
from flamingo_vlm.evaluation.specs import (
    CaptioningTask,
    ClassificationTask,
    RetrievalTask,
    TaskSpec,
    VideoQATask,
    VQATask,
    check_spec,
    metric_label,
)

if TYPE_CHECKING:
    from flamingo_vlm.model.flamingo import Flamingo

__all__ = ["QUESTION_TYPE_METRIC", "DemoMode", "Evaluator", "RunOutput", "make_evaluator", "sample_frames"]

DemoMode = Literal["random", "rices"]
QUESTION_TYPE_METRIC = "question type: {}"  # VQA / video QA metric name of one question type's accuracy
Progress = Callable[[int], None]


@dataclass
class RunOutput:
    """The result of one (shots, seed) run: the headline ``score``, other ``metrics`` (same scale, %),
    ``info`` about how it was computed (e.g. the caption tokenizer) and the per-query ``predictions``."""

    score: float
    metrics: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    predictions: list[Any] = field(default_factory=list)


def sample_frames(frames: Sequence[Path], max_frames: int) -> tuple[Path, ...]:
    """At most ``max_frames`` frames, spread uniformly over the video (first and last kept)."""
    if len(frames) <= max_frames:
        return tuple(frames)
    positions = np.linspace(0, len(frames) - 1, max_frames).round().astype(int)
    return tuple(frames[i] for i in positions)


class Evaluator(abc.ABC):
    """Shared machinery: data, demonstrations, prompt building and batching. Subclasses add the model call
    (``_run_batch``) and the metric (``_finish``)."""

    def __init__(self, model: Flamingo, spec: TaskSpec, *, demos: DemoMode = "random", batch_size: int = 8,
                 cache_dir: str | Path | None = None, feature_fn: FeatureFn | None = None,
                 media_cache_size: int = 1024) -> None:
        check_spec(spec)
        if demos not in ("random", "rices"):
            raise ValueError(f"demos must be 'random' or 'rices', got {demos!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model.eval()
        self.spec = spec
        self.batch_size = batch_size
        self.template = PromptTemplate(spec.prompt_template, spec.answer_template)
        self.stop_strings = self.template.stop_strings()
        self.eval_set, self.support_set = self._load()
        self.same_support = self.support_set is self.eval_set
        self.eval_media = [self._media(example) for example in self.eval_set]
        self.support_media = (self.eval_media if self.same_support
                              else [self._media(example) for example in self.support_set])
        self._check_fields()
        # Support indices never shown to each query: those with the query's own media file.
        self.exclude = exclusions(self.eval_media, self.support_media)
        self.selector: DemoSelector
        # Zero-shot's text-only demonstrations only set the answer format, so they are random in every demo
        # mode: picked by RICES they would put the answers of the query's nearest neighbours into a prompt
        # that claims to show the model nothing about the query (a classification's label, measured: the
        # tiny world's made-up-word task 16% -> 53% "zero-shot").
        self.zero_shot_selector = RandomDemos(len(self.support_set), self.exclude)
        if demos == "random":
            self.selector = self.zero_shot_selector
        else:
            self.selector = self._rices(self.exclude, feature_fn, cache_dir)
        self.batcher = PromptBatcher(model, cache_size=media_cache_size)

    # ---------------------------------------------------------------- per-task hooks
    @abc.abstractmethod
    def _load(self) -> tuple[list[Any], list[Any]]:
        """-> (evaluated examples, support examples); the same list object when demos come from the evaluated set."""

    @abc.abstractmethod
    def _fields(self, example: Any) -> dict[str, Any]:
        """Template fields of an example (its answer fields included, for demonstrations)."""

    @abc.abstractmethod
    def _run_batch(self, queries: Sequence[int], num_shots: int, seed: int) -> list[Any]:
        """Model outputs for a batch of query indices."""

    @abc.abstractmethod
    def _finish(self, queries: Sequence[int], outputs: list[Any]) -> RunOutput:
        """The metric over all queries of a run."""

    def _media(self, example: Any) -> data.MediaRef:
        return example.media

    def _check_fields(self) -> None:
        """Fail before any model call when a template field is missing from an example."""
        for name, examples in (("evaluated", self.eval_set), ("support", self.support_set)):
            for example in examples:
                try:
                    self.template.demo(self._fields(example))
                except (KeyError, IndexError, AttributeError) as error:
                    raise ValueError(f"{self.spec.name}: the prompt templates use {error} which the {name} "
                                     f"example {example.id!r} does not have") from None

    # ---------------------------------------------------------------- demonstrations
    def _rices(self, exclude: list[tuple[int, ...]], feature_fn: FeatureFn | None,
               cache_dir: str | Path | None) -> RicesDemos:
        # A custom feature function is keyed by its name: rename it when its output changes.
        model_key = (f"custom:{feature_fn.__module__}.{feature_fn.__qualname__}" if feature_fn is not None
                     else model_fingerprint(self.model))
        feature_fn = feature_fn or vision_feature_fn(self.model)

        def features(media: list[data.MediaRef]) -> torch.Tensor:
            # Each distinct media item once (VQA has several questions per image), then spread back.
            keys = [data.media_key(m) for m in media]
            unique: dict[str, int] = {}
            for key in keys:
                unique.setdefault(key, len(unique))
            first = {}
            for key, item in zip(keys, media, strict=True):
                first.setdefault(key, item)
            table = cached_features(list(first.values()), feature_fn, model_key=model_key, cache_dir=cache_dir)
            return table[torch.tensor([unique[key] for key in keys])]

        support = features(self.support_media)
        queries = support if self.same_support else features(self.eval_media)
        return RicesDemos(queries, support, exclude)

    def max_shots(self, queries: Sequence[int]) -> int:
        """The most demonstrations every query in ``queries`` can get (the support set minus excluded examples)."""
        excluded = max((len(set(self.exclude[q])) for q in queries), default=0)
        return len(self.support_set) - excluded

    def check_shots(self, shots: Sequence[int], queries: Sequence[int]) -> None:
        """Raise ``ValueError`` when a shot count (2 for zero-shot) exceeds the usable support set."""
        available = self.max_shots(queries)
        for k in shots:
            if k < 0:
                raise ValueError(f"shots must be >= 0, got {k}")
            needed = k if k > 0 else ZERO_SHOT_DEMOS
            if needed > available:
                raise ValueError(f"{self.spec.name}: {k} shots need {needed} demonstrations but the support set has "
                                 f"only {available} usable examples ({len(self.support_set)} minus the query's "
                                 f"own); use fewer shots or a larger support set")

    def check_prompt_length(self, shots: Sequence[int], queries: Sequence[int], seeds: Sequence[int] = (0,)) -> None:
        """Raise ``ValueError`` when any query's prompt at the largest shot count (for any of ``seeds``) exceeds the
        language model's context, so an impossible sweep fails before it starts rather than part-way through.

        Every query is checked (about a millisecond a prompt): under RICES the longest prompts gather where
        long answers cluster (a query with long captions retrieves examples with long captions), so a sample of
        queries can pass where the sweep later fails."""
        limit = self.model.processor.max_length
        if limit is None or not shots or not queries:
            return
        k = max(shots)
        seeds = list(seeds)[:1] if self.selector.mode == "rices" and k > 0 else list(seeds)  # RICES ignores seeds
        too_long: list[tuple[int, int, int]] = []  # (tokens, query, seed)
        for seed in seeds:
            for query in queries:
                text, _ = self.prompt(query, k, seed=seed)
                length = len(self.model.processor.tokenize(text))
                if length > limit:
                    too_long.append((length, query, seed))
        if too_long:
            length, query, seed = max(too_long)
            raise ValueError(f"{self.spec.name}: a {k}-shot prompt has {length} tokens but the language model "
                             f"supports at most {limit} (query {query}, seed {seed}; {len(too_long)} of "
                             f"{len(queries) * len(seeds)} prompts are too long); use fewer shots or a shorter "
                             f"prompt template")

    def demo_indices(self, query: int, num_shots: int, seed: int) -> list[int]:
        """Support indices shown before ``query``, in prompt order (zero-shot: two random ones, shown text-only)."""
        if num_shots == 0:
            return self.zero_shot_selector.select(query, ZERO_SHOT_DEMOS, seed)
        return self.selector.select(query, num_shots, seed)

    def prompt(self, query: int, num_shots: int, seed: int, order: Sequence[int] | None = None,
               query_fields: dict[str, Any] | None = None) -> tuple[str, list[data.MediaRef]]:
        """The prompt text and media of one query; ``order`` overrides the demonstrations' order."""
        demos = self.demo_indices(query, num_shots, seed)
        if order is not None:
            demos = [demos[i] for i in order]
        pairs = [(self._fields(self.support_set[i]), self.support_media[i]) for i in demos]
        fields = query_fields if query_fields is not None else self._fields(self.eval_set[query])
        return build_prompt(self.template, pairs, (fields, self.eval_media[query]), text_only_demos=num_shots == 0)

    # ---------------------------------------------------------------- running
    def run(self, queries: Sequence[int], num_shots: int, seed: int, progress: Progress | None = None) -> RunOutput:
        """Evaluate ``queries`` (indices into the evaluated set) with ``num_shots`` demonstrations and ``seed``."""
        if not queries:
            raise ValueError(f"{self.spec.name}: no queries to evaluate")
        self.check_shots([num_shots], queries)
        self._start(queries)
        outputs: list[Any] = []
        for start in range(0, len(queries), self.batch_size):
            batch = queries[start:start + self.batch_size]
            outputs.extend(self._run_batch(batch, num_shots, seed))
            if progress is not None:
                progress(len(batch))
        return self._finish(queries, outputs)

    def _start(self, queries: Sequence[int]) -> None:  # noqa: B027 - optional hook, empty by default
        """Per-run preparation that depends on the query list (e.g. the retrieval candidate pool)."""

    def settings(self) -> dict[str, Any]:
        """What this evaluator adds to the results' settings."""
        return {"metric": metric_label(self.spec), "num_examples": len(self.eval_set),
                "support_size": len(self.support_set), "support": "evaluated set" if self.same_support else "separate",
                "demos": self.selector.mode, "zero_shot_demos": ZERO_SHOT_DEMOS,
                "zero_shot_demos_drawn": self.zero_shot_selector.mode}


# --------------------------------------------------------------------------------------------------
# Open-ended: captioning, VQA, video QA
# --------------------------------------------------------------------------------------------------


class _OpenEnded(Evaluator):
    def _run_batch(self, queries: Sequence[int], num_shots: int, seed: int) -> list[str]:
        prompts, media = zip(*(self.prompt(q, num_shots, seed) for q in queries), strict=True)
        inputs = self.batcher(list(prompts), list(media))
        with torch.no_grad():
            ids = self.model.generate(**inputs, max_new_tokens=self.spec.max_new_tokens, num_beams=self.spec.num_beams)
        return [clean_generation(text, self.stop_strings) for text in self.model.processor.batch_decode(ids)]

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "num_beams": self.spec.num_beams, "max_new_tokens": self.spec.max_new_tokens,
                "stop": ["<|endofchunk|>", *self.stop_strings]}


class CaptioningEvaluator(_OpenEnded):
    spec: CaptioningTask

    def _load(self) -> tuple[list[Any], list[Any]]:
        return _load_caption_sets(self.spec)

    def _fields(self, example: data.CaptionExample) -> dict[str, Any]:
        return {"caption": example.captions[0]}  # demonstrations show the first reference, as OpenFlamingo

    def _finish(self, queries: Sequence[int], outputs: list[str]) -> RunOutput:
        scores = caption_metrics({i: outputs[i] for i in range(len(queries))},
                                 {i: list(self.eval_set[q].captions) for i, q in enumerate(queries)},
                                 tokenizer=self.spec.caption_tokenizer)
        return RunOutput(scores["CIDEr"], {"BLEU-4": scores["BLEU-4"], "ROUGE-L": scores["ROUGE-L"]},
                         {"caption_tokenizer": scores["tokenizer"]}, outputs)


def scores_per_type(examples: Sequence[Any], type_of: Callable[[Any], str], name: str,
                    score_of: Callable[[list[int]], float]) -> dict[str, float]:
    """``{name.format(type): score_of(positions of that type's examples)}``, types in sorted order; empty unless every
    example has a type (a breakdown with some queries left out would be wrong rather than partial)."""
    if not all(type_of(e) for e in examples):
        return {}
    groups: dict[str, list[int]] = {}  # type -> positions in examples
    for position, example in enumerate(examples):
        groups.setdefault(type_of(example), []).append(position)
    return {name.format(kind): score_of(positions) for kind, positions in sorted(groups.items())}


class VQAEvaluator(_OpenEnded):
    spec: VQATask

    def _load(self) -> tuple[list[Any], list[Any]]:
        spec = self.spec
        evaluated = data.load_vqa(spec.questions, spec.annotations, spec.images, image_pattern=spec.image_pattern,
                                  image_split=spec.image_split)
        if spec.support_questions is None and spec.support_annotations is None:
            return evaluated, evaluated
        if spec.support_questions is None or spec.support_annotations is None:
            raise ValueError(f"{spec.name}: give both support_questions and support_annotations (or neither, to "
                             f"draw demonstrations from the evaluated split)")
        support = data.load_vqa(spec.support_questions, spec.support_annotations, spec.support_images or spec.images,
                                image_pattern=spec.image_pattern, image_split=spec.support_image_split)
        return evaluated, support

    def _fields(self, example: data.VQAExample) -> dict[str, Any]:
        return {"question": example.question, "answer": example.demo_answer}

    def _finish(self, queries: Sequence[int], outputs: list[str]) -> RunOutput:
        examples = [self.eval_set[q] for q in queries]
        protocol = self.spec.vqa_protocol
        score = vqa_score(outputs, [e.answers for e in examples], protocol=protocol)
        # Accuracy per answer type ("yes/no", "number", "other") and per question type ("is there a", ...), as the
        # official VQAv2 evaluation reports them: an average hides a model that answers one kind of question with
        # one fixed answer. Each breakdown only when every query has its type.
        def score_of(positions: list[int]) -> float:
            return vqa_score([outputs[i] for i in positions], [examples[i].answers for i in positions],
                             protocol=protocol)

        metrics = {**scores_per_type(examples, attrgetter("answer_type"), "{}", score_of),
                   **scores_per_type(examples, attrgetter("question_type"), QUESTION_TYPE_METRIC, score_of)}
        return RunOutput(score, metrics, {"vqa_protocol": protocol}, outputs)


class VideoQAEvaluator(_OpenEnded):
    spec: VideoQATask

    def _load(self) -> tuple[list[Any], list[Any]]:
        spec = self.spec
        evaluated = data.load_video_qa(spec.annotations, spec.videos)
        if spec.support_annotations is None:
            return evaluated, evaluated
        return evaluated, data.load_video_qa(spec.support_annotations, spec.support_videos or spec.videos)

    def _media(self, example: data.VideoQAExample) -> data.MediaRef:
        limit = self.spec.max_frames or self.model.processor.max_frames
        return sample_frames(example.frames, limit)

    def _fields(self, example: data.VideoQAExample) -> dict[str, Any]:
        return {"question": example.question, "answer": example.demo_answer}

    def _finish(self, queries: Sequence[int], outputs: list[str]) -> RunOutput:
        examples = [self.eval_set[q] for q in queries]
        accuracy = exact_match_accuracy(outputs, [list(e.answers) for e in examples])
        # Accuracy per question type too, when every query has one: a model that answers one kind with a fixed
        # guess (every "which way?" with "right") hides in the average.
        metrics = scores_per_type(examples, attrgetter("question_type"), QUESTION_TYPE_METRIC, lambda positions: (
            100.0 * exact_match_accuracy([outputs[i] for i in positions], [list(examples[i].answers) for i in positions])))
        return RunOutput(100.0 * accuracy, metrics, {}, outputs)

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "max_frames": self.spec.max_frames or self.model.processor.max_frames}


# --------------------------------------------------------------------------------------------------
# Close-ended: classification, HatefulMemes, retrieval
# --------------------------------------------------------------------------------------------------


class _CloseEnded(Evaluator):
    """Scores candidates per query, averaging log-likelihoods over ``spec.ensembles`` demonstration orderings."""

    def _candidates(self, query: int) -> list[str]:
        raise NotImplementedError

    def _orders(self, query: int, num_shots: int, seed: int) -> list[list[int] | None]:
        count = num_shots if num_shots > 0 else ZERO_SHOT_DEMOS
        orders: list[list[int] | None] = [None]  # the selector's own order (RICES: most similar last)
        for ensemble in range(1, self.spec.ensembles):
            rng = np.random.default_rng([seed, query, ensemble])
            orders.append([int(i) for i in rng.permutation(count)])
        return orders

    def _run_batch(self, queries: Sequence[int], num_shots: int, seed: int) -> list[np.ndarray]:
        prompts, media, candidates = [], [], []
        for q in queries:
            for order in self._orders(q, num_shots, seed):
                text, items = self.prompt(q, num_shots, seed, order=order, query_fields=self._query_fields(q))
                prompts.append(text)
                media.append(items)
                candidates.append(self._candidates(q))
        inputs = self.batcher(prompts, media)
        from flamingo_vlm.model.generation import score_candidates

        with torch.no_grad():
            scores = score_candidates(self.model, inputs["input_ids"], inputs["attention_mask"], None, None,
                                      candidates=candidates, reduction=self.spec.reduction,
                                      media_latents=inputs["media_latents"])  # (B * E, C)
        scores = scores.float().cpu().view(len(queries), self.spec.ensembles, -1).mean(1)  # (B, C)
        return list(scores.numpy())

    def _query_fields(self, query: int) -> dict[str, Any]:
        return self._fields(self.eval_set[query])

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "reduction": self.spec.reduction, "ensembles": self.spec.ensembles}


class ClassificationEvaluator(_CloseEnded):
    spec: ClassificationTask

    def _load(self) -> tuple[list[Any], list[Any]]:
        spec = self.spec
        self.class_names = data.load_class_names(spec.class_names)
        if spec.format == "hateful_memes" and len(self.class_names) != 2:
            raise ValueError(f"{spec.name}: HatefulMemes needs exactly two class names (label 0, label 1)")

        def load(path: Any, images: Any) -> list[data.ClassificationExample]:
            if spec.format == "hateful_memes":
                return data.load_hateful_memes(path, images)
            return data.load_classification(path, self.class_names, images)[0]

        # Candidates use the demonstrations' answer template, so the model scores what the examples showed.
        self.candidate_texts = [self.template.candidate({"class_name": name}) for name in self.class_names]
        evaluated = load(spec.annotations, spec.images)
        if spec.support_annotations is None:
            return evaluated, evaluated
        return evaluated, load(spec.support_annotations, spec.support_images or spec.images)

    def _fields(self, example: data.ClassificationExample) -> dict[str, Any]:
        fields = {"class_name": self.class_names[example.label]}
        if example.text is not None:
            fields["text"] = example.text
        return fields

    def _candidates(self, query: int) -> list[str]:
        return self.candidate_texts

    def _start(self, queries: Sequence[int]) -> None:
        if self.spec.metric == "roc_auc":
            if len(self.class_names) != 2:
                raise ValueError(f"{self.spec.name}: ROC-AUC needs exactly two classes, got {len(self.class_names)}")
            labels = {self.eval_set[q].label for q in queries}
            if labels != {0, 1}:
                raise ValueError(f"{self.spec.name}: ROC-AUC needs both labels among the evaluated examples, only "
                                 f"{sorted(labels)} present; raise --limit")

    def _finish(self, queries: Sequence[int], outputs: list[np.ndarray]) -> RunOutput:
        scores = np.stack(outputs)  # (N, C)
        labels = np.array([self.eval_set[q].label for q in queries])
        predictions = [self.class_names[int(i)] for i in scores.argmax(1)]
        if self.spec.metric == "roc_auc":
            margin = scores[:, 1] - scores[:, 0]  # log-odds of class 1 among the two
            accuracy = 100.0 * float(np.mean(scores.argmax(1) == labels))
            return RunOutput(100.0 * roc_auc(margin.tolist(), labels.tolist()), {"accuracy": accuracy}, {}, predictions)
        metrics = {}
        if scores.shape[1] > 5:  # top-5 of five classes is always 100%
            metrics["top-5 accuracy"] = 100.0 * topk_accuracy(scores, labels, 5)
        return RunOutput(100.0 * topk_accuracy(scores, labels, 1), metrics, {}, predictions)

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "num_classes": len(self.class_names),
                "candidates": self.candidate_texts[:10]}


class RetrievalEvaluator(_CloseEnded):
    spec: RetrievalTask

    def _load(self) -> tuple[list[Any], list[Any]]:
        return _load_caption_sets(self.spec)

    def _fields(self, example: data.CaptionExample) -> dict[str, Any]:
        return {"caption": example.captions[0]}

    def _start(self, queries: Sequence[int]) -> None:
        # The candidate pool: every caption of the evaluated images, so each image has its own among them.
        self._pool: list[str] = []
        self._owner: list[int] = []
        for position, q in enumerate(queries):
            for caption in self.eval_set[q].captions:
                self._pool.append(self.template.candidate({"caption": caption}))
                self._owner.append(position)

    def _candidates(self, query: int) -> list[str]:
        return self._pool

    def _finish(self, queries: Sequence[int], outputs: list[np.ndarray]) -> RunOutput:
        similarity = np.stack(outputs)  # (N images, M captions): log p(caption | image, demos)
        owner = np.array(self._owner)
        image_to_text = recall_at_k(similarity, [set(np.flatnonzero(owner == i).tolist()) for i in range(len(queries))])
        text_to_image = recall_at_k(similarity.T, owner.tolist())
        metrics = {}
        for k in (1, 5, 10):
            metrics[f"i2t R@{k}"] = 100.0 * image_to_text[k]
            metrics[f"t2i R@{k}"] = 100.0 * text_to_image[k]
        best = similarity.argmax(1)
        predictions = [self._pool[int(i)] for i in best]
        return RunOutput(float(np.mean(list(metrics.values()))), metrics, {"num_candidates": len(self._pool)},
                         predictions)


def _load_caption_sets(spec: CaptioningTask | RetrievalTask) -> tuple[list[Any], list[Any]]:
    evaluated = data.load_captions(spec.annotations, spec.images, split=spec.split, image_pattern=spec.image_pattern)
    same_split = spec.support_split is None or spec.support_split == spec.split
    if spec.support_annotations is None and same_split:
        return evaluated, evaluated
    support = data.load_captions(spec.support_annotations or spec.annotations, spec.support_images or spec.images,
                                 split=spec.support_split or spec.split, image_pattern=spec.image_pattern)
    return evaluated, support


_EVALUATORS: dict[type, type[Evaluator]] = {
    CaptioningTask: CaptioningEvaluator,
    VQATask: VQAEvaluator,
    VideoQATask: VideoQAEvaluator,
    ClassificationTask: ClassificationEvaluator,
    RetrievalTask: RetrievalEvaluator,
}


def make_evaluator(model: Flamingo, spec: TaskSpec, **options: Any) -> Evaluator:
    """The evaluator of ``spec``'s task; ``options`` are :class:`Evaluator`'s keyword arguments."""
    evaluator = _EVALUATORS.get(type(spec))
    if evaluator is None:
        known = sorted(c.__name__ for c in _EVALUATORS)
        raise ValueError(f"no evaluator for {type(spec).__name__}; expected one of {known}")
    return evaluator(model, spec, **options)
