"""FlamingoProcessor: interleaved text + images/videos -> the tensors a Flamingo model reads.

A prompt is either a string with one ``<image>`` tag per media item (``images=`` lists them in order), or a list
mixing strings and media items. A media item is an image (PIL image, numpy array, file path) or a video (a list of
frames). Batches are lists of prompts, padded on the left by default so generation continues every row at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import PreTrainedTokenizerBase

from flamingo_vlm.processing.images import ImageProcessor


class FlamingoInputs(dict):
    """``input_ids`` (B, T), ``attention_mask`` (B, T), and when media are present ``pixel_values``
    (N, F, 3, S, S) with ``frame_mask`` (N, F); a dict, so ``model(**inputs)`` works."""

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> FlamingoInputs:
        moved = FlamingoInputs()
        for key, value in self.items():
            if isinstance(value, torch.Tensor):
                value = value.to(device, dtype=dtype if dtype is not None and value.is_floating_point() else None)
            moved[key] = value
        return moved


def _is_media(item: Any) -> bool:
    return not isinstance(item, str)


class FlamingoProcessor:
    """Tokenizes interleaved prompts and preprocesses their images and videos."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, image_processor: ImageProcessor, *,
                 media_token: str = "<image>", end_of_chunk_token: str = "<|endofchunk|>",
                 max_length: int | None = None, max_frames: int = 64) -> None:
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.media_token = media_token
        self.end_of_chunk_token = end_of_chunk_token
        self.media_token_id = tokenizer.convert_tokens_to_ids(media_token)
        self.end_of_chunk_token_id = tokenizer.convert_tokens_to_ids(end_of_chunk_token)
        self.max_length = max_length
        self.max_frames = max_frames

    def __call__(self, text: str | Sequence[Any], images: Sequence[Any] | None = None, *,
                 padding_side: str = "left", add_special_tokens: bool = True) -> FlamingoInputs:
        """Process one prompt or a batch.

        - ``processor("<image>Output: a cat.<|endofchunk|><image>Output:", images=[img1, img2])``
        - ``processor(["Output:", img, " a cat."])`` (interleaved list)
        - ``processor([prompt_a, prompt_b], images=[[img1], [img2, img3]])`` (batch; one media list per prompt)
        - a video is a list of frames: ``images=[[frame0, frame1, ...]]`` for one prompt with one video.

        A list whose items are all strings, or all lists, is a batch; any other list is one interleaved prompt.
        """
        prompts, media = self._normalise(text, images)
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', not {padding_side!r}.")
        token_rows: list[list[int]] = []
        pixel_items: list[torch.Tensor] = []
        for index, (prompt, items) in enumerate(zip(prompts, media)):
            if not prompt.strip() and not items:
                raise ValueError(f"Prompt {index} is empty; give it some text or media.")
            tags = prompt.count(self.media_token)
            if tags != len(items):
                raise ValueError(
                    f"Prompt {index} has {tags} {self.media_token} tag(s) but {len(items)} image(s)/video(s) were "
                    f"given; put one {self.media_token} where each media item goes, in the same order."
                )
            ids = self.tokenize(prompt, add_special_tokens=add_special_tokens)
            if ids.count(self.media_token_id) != tags:
                raise ValueError(f"Prompt {index}: the tokenizer split the {self.media_token} tag; it must be a "
                                 f"special token (use the model's processor).")
            if self.max_length is not None and len(ids) > self.max_length:
                raise ValueError(f"Prompt {index} has {len(ids)} tokens but the language model supports at most "
                                 f"{self.max_length}; use fewer shots or shorter text.")
            token_rows.append(ids)
            for item_index, item in enumerate(items):
                pixel_items.append(self._media_pixels(item, f"prompt {index}, media item {item_index}"))

        inputs = FlamingoInputs(self.pad(token_rows, padding_side))
        if pixel_items:
            frames = max(p.shape[0] for p in pixel_items)
            pixel_values = pixel_items[0].new_zeros(len(pixel_items), frames, *pixel_items[0].shape[1:])
            frame_mask = torch.zeros(len(pixel_items), frames, dtype=torch.bool)
            for i, pixels in enumerate(pixel_items):
                pixel_values[i, : pixels.shape[0]] = pixels
                frame_mask[i, : pixels.shape[0]] = True
            inputs["pixel_values"] = pixel_values  # (N, F, 3, S, S)
            inputs["frame_mask"] = frame_mask  # (N, F)
        return inputs

    def tokenize(self, prompt: str, *, add_special_tokens: bool = True) -> list[int]:
        """Token ids of a prompt, starting with BOS whenever the tokenizer defines one.

        Training sequences always start with BOS (``data/sequences.py``); some tokenizers (GPT-2 style) do not add
        it themselves, so it is added here to keep prompts and training data alike.
        """
        ids = self.tokenizer(prompt, add_special_tokens=add_special_tokens)["input_ids"]
        bos = self.tokenizer.bos_token_id
        if add_special_tokens and bos is not None and (not ids or ids[0] != bos):
            ids = [bos, *ids]
        return ids

    def _media_pixels(self, item: Any, where: str) -> torch.Tensor:
        try:
            pixels = self.image_processor.preprocess_media(item)  # (F, 3, S, S)
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from error
        if pixels.shape[0] > self.max_frames:
            raise ValueError(f"{where} is a video of {pixels.shape[0]} frames but the model supports at most "
                             f"{self.max_frames} (FlamingoConfig.max_frames_at_inference); sample fewer frames.")
        return pixels

    def _normalise(self, text: Any, images: Any) -> tuple[list[str], list[list[Any]]]:
        """-> one string (with tags) and one media list per prompt."""
        if isinstance(text, str):
            return [text], [self._media_list(images, 0)]
        if not isinstance(text, Sequence) or len(text) == 0:
            raise ValueError("text must be a prompt string, an interleaved list of strings and media, or a "
                             "non-empty list of prompts.")
        all_strings = all(isinstance(part, str) for part in text)
        all_lists = all(isinstance(part, (list, tuple)) for part in text)
        if not (all_strings or all_lists):
            # One interleaved prompt: strings and media items (images, or videos as frame lists) mixed.
            if images is not None:
                raise ValueError("An interleaved prompt carries its media inline; do not pass images= as well.")
            return [self._join(text)], [[p for p in text if _is_media(p)]]
        prompts: list[str] = []
        media: list[list[Any]] = []
        if images is not None and (not isinstance(images, Sequence) or len(images) != len(text)):
            raise ValueError(f"For a batch of {len(text)} prompts, images= must be a list of {len(text)} lists "
                             f"(the media of each prompt, possibly empty).")
        for index, prompt in enumerate(text):
            if isinstance(prompt, str):
                prompts.append(prompt)
                media.append(self._media_list(None if images is None else images[index], index))
            elif isinstance(prompt, (list, tuple)):
                if images is not None and images[index]:
                    raise ValueError(f"Prompt {index} is interleaved; its media go inline, not in images=.")
                prompts.append(self._join(prompt))
                media.append([p for p in prompt if _is_media(p)])
            else:
                raise ValueError(f"Prompt {index} is a {type(prompt).__name__}; expected a string or a list.")
        return prompts, media

    def _media_list(self, images: Any, index: int) -> list[Any]:
        if images is None:
            return []
        if isinstance(images, (Image.Image, np.ndarray, str)) or not isinstance(images, Sequence):
            return [images]  # a single image for a one-tag prompt
        return list(images)

    def _join(self, parts: Sequence[Any]) -> str:
        return "".join(self.media_token if _is_media(p) else p for p in parts)

    def pad(self, rows: list[list[int]], side: str = "left") -> dict[str, torch.Tensor]:
        """Token rows -> padded ``input_ids`` and ``attention_mask`` (B, T)."""
        length = max(len(r) for r in rows)
        pad_id = self.tokenizer.pad_token_id
        input_ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), length), dtype=torch.long)
        for i, row in enumerate(rows):
            span = slice(length - len(row), length) if side == "left" else slice(0, len(row))
            input_ids[i, span] = torch.tensor(row, dtype=torch.long)
            attention_mask[i, span] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    def batch_decode(self, token_ids: torch.Tensor | Sequence[Sequence[int]], *, skip_special_tokens: bool = True,
                     strip: bool = True) -> list[str]:
        """Decode generated ids, cutting each row at its first ``<|endofchunk|>``."""
        return [self.decode(row, skip_special_tokens=skip_special_tokens, strip=strip) for row in token_ids]

    def decode(self, token_ids: torch.Tensor | Sequence[int], *, skip_special_tokens: bool = True,
               strip: bool = True) -> str:
        ids = token_ids.tolist() if isinstance(token_ids, torch.Tensor) else list(token_ids)
        if self.end_of_chunk_token_id in ids:
            ids = ids[: ids.index(self.end_of_chunk_token_id)]
        text = self.tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)
        return text.strip() if strip else text
