"""Decoded samples -> token sequences with labels and pixels, laid out as in the paper (Sec. 2.4, App. A.3).

Layouts (``<BOS>``/``<EOS>`` only when the tokenizer has them):

- pairs and videos: ``<BOS><image>text<|endofchunk|><EOS>``; with probability ``leading_space_prob`` the text gets
  a leading space (App. A.3), so the model sees both tokenisations of a caption's first word.
- interleaved documents: ``<image>`` at each image position, ``<|endofchunk|>`` before every image (except one
  opening the document) and at the end, then ``<EOS>``; sentences are joined by one space and the text right
  after an image tag has no leading space (OpenFlamingo's MMC4 formatting). A training sample is a random window
  of ``max_tokens`` tokens (``<BOS>`` + a slice of the document) keeping at most the first ``max_media`` images
  in the window.
- text documents (no image; not in the paper): ``<BOS>`` + a random window of the text's tokens, ``<EOS>`` when the
  window reaches the document's end. ``<|endofchunk|>`` written in the text is kept (documents separate their
  chunks with it, as the LM's own pretraining text may); only ``<image>``, BOS, EOS and pad are dropped from it.

Labels (what the loss predicts): a copy of ``input_ids`` with -100 on ``<BOS>``, on every ``<image>`` token (images
are given, not predicted), on everything up to the first ``<image>`` (text that sees no image teaches nothing about
images; OpenFlamingo does the same), and on padding (``collate``). ``<|endofchunk|>`` and ``<EOS>`` are predicted,
so the model learns where a caption ends. A text document has no image: every token after ``<BOS>`` is predicted.

Invariant: the number of ``<image>`` tokens in ``input_ids`` always equals the number of media items ``M``. To
keep it, structural tokens that a text spells out literally (``<image>``, ``<|endofchunk|>``, BOS, EOS, pad) are
dropped from the text's token ids.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from flamingo_vlm.data.formats import InterleavedSample, PairSample, Sample, TextSample, VideoSample
from flamingo_vlm.processing.processor import FlamingoProcessor

__all__ = ["IGNORE_INDEX", "SequenceBuilder", "TrainingExample", "collate", "pack_examples", "sample_frame_indices"]

IGNORE_INDEX = -100


@dataclass
class TrainingExample:
    """One training sequence and its media.

    Attributes:
        input_ids: ``(T,)`` token ids, ``T <= max_tokens``.
        labels: ``(T,)`` targets, -100 where nothing is predicted (see the module docstring).
        pixel_values: ``(M, F, 3, S, S)`` preprocessed media in the order of the ``<image>`` tokens; ``M`` may be 0.
        frame_mask: ``(M, F)`` True for real frames.
        kind: ``"pairs"``, ``"interleaved"``, ``"video"`` or ``"text"``.
        key: the WebDataset key of the source sample, for logging.
    """

    input_ids: torch.Tensor
    labels: torch.Tensor
    pixel_values: torch.Tensor
    frame_mask: torch.Tensor
    kind: str
    key: str

    @property
    def num_media(self) -> int:
        return int(self.pixel_values.shape[0])


class SequenceBuilder:
    """Turns decoded samples into :class:`TrainingExample` objects; all randomness comes from ``rng``.

    Args:
        processor: supplies the tokenizer (with ``<image>`` and ``<|endofchunk|>`` registered) and the image
            processor.
        max_tokens: longest sequence, ``<BOS>`` and ``<EOS>`` included (paper: 256).
        max_media: most images kept in an interleaved window (paper: 5).
        leading_space_prob: probability of prepending a space to a pair's or video's text (paper: 0.5).
        rng: the random source; reseed ``builder.rng`` per sample for reproducible streams.
        max_frames: videos with more frames are subsampled to this many evenly spaced frames (paper: 8 frames
            in training); ``None`` keeps every frame.
    """

    def __init__(self, processor: FlamingoProcessor, *, max_tokens: int = 256, max_media: int = 5,
                 leading_space_prob: float = 0.5, rng: random.Random, max_frames: int | None = 8) -> None:
        tokenizer = processor.tokenizer
        self.processor = processor
        self.media_id = _special_id(processor, processor.media_token)
        self.eoc_id = _special_id(processor, processor.end_of_chunk_token)
        self.bos_id: int | None = tokenizer.bos_token_id
        self.eos_id: int | None = tokenizer.eos_token_id
        # Ids that structure a sequence; if a text spells one out literally, the tokenizer would emit it, which
        # could break the <image> count or end a caption early, so such ids are dropped from text.
        self._structural = {i for i in (self.media_id, self.eoc_id, self.bos_id, self.eos_id,
                                        tokenizer.pad_token_id) if i is not None}
        self._bos = [] if self.bos_id is None else [self.bos_id]
        self._eos = [] if self.eos_id is None else [self.eos_id]
        min_tokens = len(self._bos) + 2 + len(self._eos) + 1  # specials + <image> + <|endofchunk|> + one token
        if max_tokens < min_tokens:
            raise ValueError(f"max_tokens={max_tokens} is too small; this tokenizer needs at least {min_tokens} "
                             f"(BOS/EOS, <image>, <|endofchunk|> and one text token).")
        if max_media < 1:
            raise ValueError(f"max_media must be >= 1, got {max_media}.")
        if not 0.0 <= leading_space_prob <= 1.0:
            raise ValueError(f"leading_space_prob must lie in [0, 1], got {leading_space_prob}.")
        if max_frames is not None and max_frames < 1:
            raise ValueError(f"max_frames must be >= 1 or None, got {max_frames}.")
        self.max_tokens = max_tokens
        self.max_media = max_media
        self.leading_space_prob = leading_space_prob
        self.rng = rng
        self.max_frames = max_frames

    def __call__(self, sample: Sample) -> TrainingExample:
        """Build the example for any decoded sample."""
        if isinstance(sample, PairSample):
            return self.pair(sample)
        if isinstance(sample, VideoSample):
            return self.video(sample)
        if isinstance(sample, InterleavedSample):
            return self.interleaved(sample)
        if isinstance(sample, TextSample):
            return self.text(sample)
        raise TypeError(f"Expected a PairSample, InterleavedSample, VideoSample or TextSample, got "
                        f"{type(sample).__name__}.")

    # ------------------------------------------------------------------ pairs and videos

    def pair(self, sample: PairSample) -> TrainingExample:
        """``<BOS><image>text<|endofchunk|><EOS>`` with one image."""
        pixels = self.processor.image_processor.preprocess_media(sample.image)  # (1, 3, S, S)
        return self._captioned(sample.text, pixels.unsqueeze(0), "pairs", sample.key)

    def video(self, sample: VideoSample) -> TrainingExample:
        """``<BOS><image>text<|endofchunk|><EOS>`` with one video (at most ``max_frames`` frames)."""
        frames = sample.frames
        if self.max_frames is not None and len(frames) > self.max_frames:
            frames = [frames[i] for i in sample_frame_indices(len(frames), self.max_frames)]
        pixels = self.processor.image_processor.preprocess_media(list(frames))  # (F, 3, S, S)
        return self._captioned(sample.text, pixels.unsqueeze(0), "video", sample.key)

    def _captioned(self, text: str, pixels: torch.Tensor, kind: str, key: str) -> TrainingExample:
        # Draw unconditionally so the number of draws per sample does not depend on the probability.
        if self.rng.random() < self.leading_space_prob:
            text = " " + text
        room = self.max_tokens - len(self._bos) - 2 - len(self._eos)
        text_ids = self._text_ids(text)[:room]  # truncate the text, never the closing EOC/EOS
        ids = [*self._bos, self.media_id, *text_ids, self.eoc_id, *self._eos]
        return self._example(ids, pixels, kind, key)

    # ------------------------------------------------------------------ interleaved documents

    def interleaved(self, sample: InterleavedSample) -> TrainingExample:
        """A random ``max_tokens`` window of the document, keeping at most ``max_media`` images.

        The window start is drawn uniformly among the offsets whose window holds at least one image followed by
        at least one token (so every sample has an image that conditions some text). Images after the first
        ``max_media`` from the window start are removed from the document together with their tags (the text
        around them simply joins up, as if they had never been there), and the window is then cut.
        """
        if not sample.images:
            raise ValueError(f"Interleaved sample {sample.key!r} has no images; decode_sample rejects such "
                             f"documents.")
        budget = self.max_tokens - len(self._bos)
        tokens, image_at = self._document_tokens(sample)
        start = 0 if len(tokens) <= budget else self._window_start(sorted(image_at), len(tokens), budget)

        first = min(index for position, index in image_at.items() if position >= start)
        keep = range(first, first + self.max_media)
        if len(sample.images) > keep.stop:
            # Re-render without the surplus images. Everything before the first kept image is unchanged, so the
            # window start keeps its meaning.
            dropped = set(range(keep.stop, len(sample.images)))
            tokens, image_at = self._document_tokens(sample, dropped)

        end = min(len(tokens), start + budget)
        if end < len(tokens) and tokens[end - 1] == self.media_id:
            end -= 1  # the window would end on an image that conditions no token: leave it out
        window = tokens[start:end]
        kept = [image_at[position] for position in range(start, end) if position in image_at]
        pixels = torch.stack([self.processor.image_processor.preprocess_media(sample.images[i][1])
                              for i in kept])  # (M, 1, 3, S, S)
        return self._example([*self._bos, *window], pixels, "interleaved", sample.key)

    def _document_tokens(self, sample: InterleavedSample,
                         dropped: set[int] | frozenset[int] = frozenset()) -> tuple[list[int], dict[int, int]]:
        """The whole document's ids (no BOS) and, for each ``<image>`` position, the index of its image.

        Images whose index is in ``dropped`` are left out (their sentences stay).
        """
        by_sentence: dict[int, list[int]] = {}
        for image_index, (sentence_index, _) in enumerate(sample.images):
            if image_index not in dropped:
                by_sentence.setdefault(sentence_index, []).append(image_index)

        tokens: list[int] = []
        image_at: dict[int, int] = {}
        pending: list[str] = []  # sentences since the last image, tokenized together as one chunk of text

        def flush() -> None:
            if pending:
                tokens.extend(self._text_ids(" ".join(pending)))
                pending.clear()

        for sentence_index, sentence in enumerate(sample.texts):
            for image_index in by_sentence.get(sentence_index, []):
                flush()
                if tokens:  # an image opening the document has no chunk before it to end
                    tokens.append(self.eoc_id)
                image_at[len(tokens)] = image_index
                tokens.append(self.media_id)
            if sentence.strip():
                pending.append(sentence.strip())
        flush()
        tokens.extend([self.eoc_id, *self._eos])
        return tokens, image_at

    def _window_start(self, image_positions: list[int], length: int, budget: int) -> int:
        """Uniform over starts ``s`` whose window ``[s, s + budget)`` has an image at ``p <= s + budget - 2``."""
        last_start = length - budget
        intervals: list[tuple[int, int]] = []
        for p in image_positions:
            low, high = max(0, p - budget + 2), min(p, last_start)
            if low > high:
                continue
            if intervals and low <= intervals[-1][1] + 1:
                intervals[-1] = (intervals[-1][0], max(intervals[-1][1], high))
            else:
                intervals.append((low, high))
        if not intervals:
            return 0
        draw = self.rng.randrange(sum(high - low + 1 for low, high in intervals))
        for low, high in intervals:
            if draw <= high - low:
                return low + draw
            draw -= high - low + 1
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ text documents

    def text(self, sample: TextSample) -> TrainingExample:
        """``<BOS>`` + a random ``max_tokens`` window of the document (``<EOS>`` if it reaches the end), no media.

        Every token after ``<BOS>`` carries loss: this is the frozen LM's own kind of sequence, which keeps the
        gated dense layers (they act on every token, image or not) from unlearning what the LM does with text.
        """
        keep = self._structural - {self.eoc_id}
        ids = self.processor.tokenizer(sample.text, add_special_tokens=False)["input_ids"]
        tokens = [i for i in ids if i not in keep] + self._eos
        budget = self.max_tokens - len(self._bos)
        start = 0 if len(tokens) <= budget else self.rng.randrange(len(tokens) - budget + 1)
        input_ids = torch.tensor([*self._bos, *tokens[start:start + budget]], dtype=torch.long)
        labels = input_ids.clone()
        labels[: len(self._bos)] = IGNORE_INDEX
        size = self.processor.image_processor.image_size
        return TrainingExample(input_ids=input_ids, labels=labels,
                               pixel_values=torch.zeros(0, 1, 3, size, size),  # (M=0, F, 3, S, S)
                               frame_mask=torch.zeros(0, 1, dtype=torch.bool), kind="text", key=sample.key)

    # ------------------------------------------------------------------ shared

    def _text_ids(self, text: str) -> list[int]:
        ids = self.processor.tokenizer(text, add_special_tokens=False)["input_ids"]
        return [i for i in ids if i not in self._structural]

    def _example(self, ids: list[int], pixels: torch.Tensor, kind: str, key: str) -> TrainingExample:
        input_ids = torch.tensor(ids, dtype=torch.long)
        is_media = input_ids == self.media_id
        if int(is_media.sum()) != pixels.shape[0]:
            raise AssertionError(f"{key!r}: {int(is_media.sum())} <image> tokens for {pixels.shape[0]} media items.")
        labels = input_ids.clone()
        labels[is_media] = IGNORE_INDEX
        first_media = int(is_media.nonzero()[0, 0]) if bool(is_media.any()) else len(ids)
        labels[: first_media + 1] = IGNORE_INDEX  # BOS and any text before the first image
        frame_mask = torch.ones(pixels.shape[:2], dtype=torch.bool)  # (M, F)
        return TrainingExample(input_ids=input_ids, labels=labels, pixel_values=pixels, frame_mask=frame_mask,
                               kind=kind, key=key)


def sample_frame_indices(num_frames: int, count: int) -> list[int]:
    """``count`` evenly spaced frame indices (segment centres) out of ``num_frames``, in order."""
    if count >= num_frames:
        return list(range(num_frames))
    return [int((i + 0.5) * num_frames / count) for i in range(count)]


def pack_examples(examples: Sequence[TrainingExample]) -> TrainingExample:
    """One row made of several examples one after another (tokens, labels and media in order).

    Each part keeps its own ``<BOS>``, ``<EOS>`` and labels, so a part's text before its first image still carries
    no loss. The LM's self-attention sees the earlier parts (the LM's own pretraining rows are packed the same
    way); the cross-attention of a part's text before its first image reads the previous part's last image, as
    text after an image reads that image in any document.
    """
    if not examples:
        raise ValueError("pack_examples needs at least one example.")
    frames = {int(e.pixel_values.shape[1]) for e in examples if e.num_media}
    if len(frames) > 1:
        raise ValueError(f"Cannot pack examples whose media have different frame counts {sorted(frames)}.")
    media = [e for e in examples if e.num_media] or examples[:1]
    return TrainingExample(
        input_ids=torch.cat([e.input_ids for e in examples]),  # (T_1 + ... + T_k,)
        labels=torch.cat([e.labels for e in examples]),
        pixel_values=torch.cat([e.pixel_values for e in media]),  # (M_1 + ... + M_k, F, 3, S, S)
        frame_mask=torch.cat([e.frame_mask for e in media]),
        kind=examples[0].kind,
        key="+".join(e.key for e in examples),
    )


def collate(examples: Sequence[TrainingExample], pad_token_id: int, pad_to_multiple_of: int = 1,
            max_length: int | None = None) -> dict[str, torch.Tensor]:
    """Right-pad a list of examples into the keyword arguments of ``Flamingo.forward``.

    Returns ``input_ids`` (B, T), ``attention_mask`` (B, T), ``labels`` (B, T) with -100 on padding and, when the
    batch has media, ``pixel_values`` (N, F, 3, S, S) (every row's media, row after row, frames zero-padded to the
    longest video) with ``frame_mask`` (N, F).

    T is the longest example rounded up to ``pad_to_multiple_of``, but not past ``max_length`` (the longest a row
    may be; never below the longest example). Fewer distinct lengths mean fewer distinct matrix shapes: a CPU's
    bf16 kernels are built for each new shape (several ms each), a GPU's tensor cores want multiples of 8.
    """
    if not examples:
        raise ValueError("collate needs at least one example.")
    if pad_token_id is None:
        raise ValueError("pad_token_id is None; the tokenizer needs a pad token (add_flamingo_tokens sets one).")
    if pad_to_multiple_of < 1:
        raise ValueError(f"pad_to_multiple_of must be >= 1, got {pad_to_multiple_of}.")
    longest = max(int(e.input_ids.shape[0]) for e in examples)
    length = -(-longest // pad_to_multiple_of) * pad_to_multiple_of
    if max_length is not None:
        length = max(longest, min(length, max_length))
    input_ids = torch.full((len(examples), length), pad_token_id, dtype=torch.long)  # (B, T)
    attention_mask = torch.zeros((len(examples), length), dtype=torch.long)  # (B, T)
    labels = torch.full((len(examples), length), IGNORE_INDEX, dtype=torch.long)  # (B, T)
    for row, example in enumerate(examples):
        size = int(example.input_ids.shape[0])
        input_ids[row, :size] = example.input_ids
        attention_mask[row, :size] = 1
        labels[row, :size] = example.labels
    batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}

    media = [e for e in examples if e.num_media > 0]
    if not media:
        return batch
    image_shape = media[0].pixel_values.shape[2:]
    if any(e.pixel_values.shape[2:] != image_shape for e in media):
        shapes = sorted({tuple(e.pixel_values.shape[2:]) for e in media})
        raise ValueError(f"Examples have media of different image shapes {shapes}; use one image processor.")
    count = sum(e.num_media for e in media)
    frames = max(int(e.pixel_values.shape[1]) for e in media)
    pixel_values = media[0].pixel_values.new_zeros((count, frames, *image_shape))  # (N, F, 3, S, S)
    frame_mask = torch.zeros((count, frames), dtype=torch.bool)  # (N, F)
    index = 0
    for example in media:
        m, f = example.pixel_values.shape[:2]
        pixel_values[index: index + m, :f] = example.pixel_values
        frame_mask[index: index + m, :f] = example.frame_mask
        index += m
    batch["pixel_values"] = pixel_values
    batch["frame_mask"] = frame_mask
    return batch


def _special_id(processor: FlamingoProcessor, token: str) -> int:
    """The id of an added special token, or a clear error if the tokenizer lacks it."""
    token_id = processor.tokenizer.convert_tokens_to_ids(token)
    if token_id is None or processor.tokenizer.convert_ids_to_tokens(token_id) != token:
        raise ValueError(f"The tokenizer has no {token!r} token; build the processor from a Flamingo model "
                         f"(add_flamingo_tokens registers it).")
    return int(token_id)
