"""The inputs of every measurement, built identically in both interpreters (torch only, seeded).

Token sequences are written with two placeholders, ``IMG`` for ``<image>`` and ``EOC`` for ``<|endofchunk|>``;
each worker maps them to its own tokenizer's ids (OpenFlamingo and this project number the two new tokens
differently). Text tokens are drawn from the shared base vocabulary, so both sides see the same ids.
"""

from __future__ import annotations

from typing import Any

IMG, EOC = -1, -2
FIRST_TEXT_ID = 3  # 0, 1, 2 are <s>, </s>, <pad>


def torch_dtype(name: str) -> Any:
    """``"fp32"`` or ``"bf16"`` -> the torch dtype a query's weights and images are cast to."""
    import torch

    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    if name not in dtypes:
        raise ValueError(f"dtype must be one of {sorted(dtypes)}, got {name!r}")
    return dtypes[name]


def _text(generator: Any, count: int, vocab: int) -> list[int]:
    import torch

    return torch.randint(FIRST_TEXT_ID, vocab, (count,), generator=generator).tolist()


def training_batch(batch: int, seq_len: int, images: int, vocab: int, bos: int, seed: int) -> list[list[int]]:
    """``batch`` rows of ``seq_len`` tokens: ``<s>`` then ``images`` chunks ``<image> text... <|endofchunk|>``."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    chunk = (seq_len - 1) // images
    if chunk < 3:
        raise ValueError(f"seq_len={seq_len} is too short for {images} images per sequence.")
    rows = []
    for _ in range(batch):
        row = [bos]
        for index in range(images):
            length = chunk if index < images - 1 else seq_len - 1 - chunk * (images - 1)
            row += [IMG] + _text(generator, length - 2, vocab) + [EOC]
        rows.append(row)
    return rows


def few_shot_prompt(shots: int, caption_tokens: int, vocab: int, bos: int, seed: int) -> list[int]:
    """OpenFlamingo's captioning prompt: ``shots`` x ``<image>Output: caption<|endofchunk|>`` then
    ``<image>Output:`` for the query (``shots + 1`` images)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    output = _text(generator, 2, vocab)  # stands for "Output:"
    prompt = [bos]
    for _ in range(shots):
        prompt += [IMG] + output + _text(generator, caption_tokens, vocab) + [EOC]
    return prompt + [IMG] + output


def spread_images(seq_len: int, images: int, vocab: int, seed: int) -> list[int]:
    """One row of ``seq_len`` tokens with ``images`` ``<image>`` tokens evenly spread, the first at position 0."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    row = _text(generator, seq_len, vocab)
    for index in range(images):
        row[index * seq_len // images] = IMG
    return row


def to_ids(rows: list[list[int]], image_id: int, end_of_chunk_id: int) -> Any:
    """Placeholders -> this side's ids: a ``(B, T)`` long tensor."""
    import torch

    ids = torch.tensor(rows, dtype=torch.long)
    ids[ids == IMG] = image_id
    ids[ids == EOC] = end_of_chunk_id
    return ids


def labels_for(rows: list[list[int]], end_of_chunk_id: int) -> Any:
    """Training labels: every token except ``<image>`` (and nothing is padding here)."""
    import torch

    labels = torch.tensor(rows, dtype=torch.long)
    labels[labels == IMG] = -100
    labels[labels == EOC] = end_of_chunk_id
    return labels


def pixels(count: int, image_size: int, seed: int) -> Any:
    """``count`` normalised images ``(count, 3, H, W)``."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    return torch.randn(count, 3, image_size, image_size, generator=generator)


def media_latents(count: int, latents: int, dim: int, seed: int) -> Any:
    """Resampled media tokens ``(count, latents, dim)`` for the module-level cross-attention measurements."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    return torch.randn(count, latents, dim, generator=generator)


def peer_xattn_block_step(block: Any, suite: Any, manifest: dict[str, Any], image_id: int) -> tuple[Any, dict[str, Any]]:
    """Forward + backward of a peer's gated cross-attention block, ``block(hidden, latents, media_locations=)``
    (OpenFlamingo and flamingo-pytorch share that call), on the suite's training-sized batch."""
    import torch

    s = suite
    rows = training_batch(s.batch, s.seq_len, s.images_per_seq, manifest["vocab"], manifest["bos"], s.seed)
    locations = to_ids(rows, image_id, 3) == image_id  # (B, T) bool
    hidden = torch.randn(s.batch, s.seq_len, s.lm_width, requires_grad=True)
    latents = media_latents(s.batch * s.images_per_seq, s.num_latents, s.lm_width, s.seed).view(
        s.batch, s.images_per_seq, s.num_latents, s.lm_width).requires_grad_()  # (B, images, L, D)

    def fn() -> None:
        block.zero_grad(set_to_none=True)
        hidden.grad = latents.grad = None
        block(hidden, latents, media_locations=locations).sum().backward()

    return fn, {"hidden_shape": list(hidden.shape), "media_shape": list(latents.shape)}


def count_images(row: list[int]) -> int:
    return sum(1 for token in row if token == IMG)
