"""Few-shot prompts: templates per task, demonstration formatting, zero-shot text-only demonstrations.

A task's prompt has two templates (Python ``str.format`` strings over the example's fields):

* ``prompt``: the part written for every example, with exactly one ``<image>`` where its image (or video)
  goes; the query ends with it, e.g. ``"<image>Question: {question} Answer:"``;
* ``answer``: the part a demonstration adds after it, e.g. ``" {answer}"``. A demonstration is
  ``prompt + answer + "<|endofchunk|>"``. For close-ended tasks the candidates are the ``answer`` template
  filled with each class name, so demonstrations and candidates are written the same way.

A full prompt is the demonstrations, in order, followed by the query (the paper's Sec. 2.5). Zero-shot
prompts hold :data:`ZERO_SHOT_DEMOS` demonstrations with their ``<image>`` removed (text only, no media),
as in the paper and OpenFlamingo.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = [
    "END_OF_CHUNK",
    "IMAGE_TOKEN",
    "ZERO_SHOT_DEMOS",
    "PromptTemplate",
    "build_prompt",
    "clean_generation",
]

IMAGE_TOKEN = "<image>"
END_OF_CHUNK = "<|endofchunk|>"
#: Zero-shot prompts still show the answer format: two demonstrations with their images removed.
ZERO_SHOT_DEMOS = 2

_Media = TypeVar("_Media")


def _fields_of(template: str) -> set[str]:
    try:
        return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as error:
        raise ValueError(f"template {template!r} is not a valid format string: {error}") from error


@dataclass(frozen=True)
class PromptTemplate:
    """The two templates of a task (see the module docstring)."""

    prompt: str
    answer: str

    def check(self, prompt_fields: Iterable[str], answer_fields: Iterable[str], task: str) -> None:
        """Raise ``ValueError`` unless ``prompt`` has exactly one ``<image>`` and both templates only use
        the given field names (``prompt`` may use the answer fields too)."""
        if self.prompt.count(IMAGE_TOKEN) != 1:
            raise ValueError(f"{task}: prompt template {self.prompt!r} must contain exactly one {IMAGE_TOKEN} "
                             f"(where the example's image goes)")
        if IMAGE_TOKEN in self.answer:
            raise ValueError(f"{task}: answer template {self.answer!r} must not contain {IMAGE_TOKEN}")
        if not self.answer.strip():
            raise ValueError(f"{task}: answer template is empty")
        allowed_prompt = set(prompt_fields)
        allowed_answer = set(answer_fields)
        for name, template, allowed in (("prompt", self.prompt, allowed_prompt),
                                        ("answer", self.answer, allowed_answer | allowed_prompt)):
            unknown = {field for field in _fields_of(template) if field.split(".")[0].split("[")[0] not in allowed}
            if unknown:
                raise ValueError(f"{task}: {name} template {template!r} uses unknown field(s) {sorted(unknown)}; "
                                 f"available: {sorted(allowed)}")

    def query(self, fields: Mapping[str, Any]) -> str:
        """The query's text: ``prompt`` filled in (ends where the model continues)."""
        return self.prompt.format(**fields)

    def candidate(self, fields: Mapping[str, Any]) -> str:
        """A continuation to score or show: ``answer`` filled in."""
        return self.answer.format(**fields)

    def demo(self, fields: Mapping[str, Any], *, with_image: bool = True) -> str:
        """One demonstration: ``prompt + answer + <|endofchunk|>``, without its ``<image>`` when text-only."""
        text = self.query(fields) + self.candidate(fields) + END_OF_CHUNK
        return text if with_image else text.replace(IMAGE_TOKEN, "")

    def stop_strings(self) -> tuple[str, ...]:
        """The template's own words (``"Question:"``, ``"Answer:"``, ``"Output:"``): a generation is cut where the
        model starts writing the next example instead of stopping at ``<|endofchunk|>``."""
        pieces = []
        for literal, _, _, _ in string.Formatter().parse(self.prompt):
            piece = literal.replace(IMAGE_TOKEN, "").strip()
            if piece:
                pieces.append(piece)
        return tuple(pieces)


def build_prompt(
    template: PromptTemplate,
    demos: Sequence[tuple[Mapping[str, Any], _Media]],
    query: tuple[Mapping[str, Any], _Media],
    *,
    text_only_demos: bool = False,
) -> tuple[str, list[_Media]]:
    """Demonstrations then the query -> (prompt text, its media in ``<image>`` order).

    Args:
        demos: (fields, media) of each demonstration, in prompt order (the last is next to the query).
        query: (fields, media) of the query; its answer fields are not used.
        text_only_demos: drop the demonstrations' images (zero-shot prompts): the only media item is the query's.
    """
    parts = [template.demo(fields, with_image=not text_only_demos) for fields, _ in demos]
    media = [] if text_only_demos else [item for _, item in demos]
    parts.append(template.query(query[0]))
    media.append(query[1])
    return "".join(parts), media


def clean_generation(text: str, stop_strings: Iterable[str] = ()) -> str:
    """A generated answer as scored: cut at the first line break and at the first ``stop_strings`` occurrence
    (the start of a made-up next example, as OpenFlamingo's post-processing does), then stripped."""
    text = text.split("\n", 1)[0]
    for stop in stop_strings:
        if stop:
            text = text.split(stop, 1)[0]
    return text.strip()
