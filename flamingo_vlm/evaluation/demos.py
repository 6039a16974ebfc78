"""Choosing the demonstrations of each query: random per seed, or RICES (retrieval by vision features).

* :class:`RandomDemos`: ``k`` support examples drawn without replacement by a generator seeded with
  ``(seed, query index)``, in the drawn (random) order, so a query's demonstrations depend on the seed and
  the query only (not on the batch size, the limit or the other queries).
* :class:`RicesDemos` (Yang et al. 2022, used by Flamingo Sec. 2.5): the ``k`` support examples whose frozen
  vision features are most similar (cosine) to the query's, ordered so that **the most similar comes last**,
  next to the query. Deterministic: the seed does not change them.

Both never show a query its own example: every support example with the same media file as the query (the
query itself when the support set is the evaluated set, and other questions about the same image) is
excluded.

RICES features are mean-pooled patch features of the model's frozen vision encoder (``model.vision``),
averaged over a video's frames and L2-normalised. They are computed once per (model, dataset) and cached on
disk as safetensors (never pickle), keyed by a fingerprint of the vision encoder's weights and
preprocessing and a fingerprint of the dataset's media files (resolved paths, sizes and modification times).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from flamingo_vlm.evaluation.datasets import MediaRef, media_key

if TYPE_CHECKING:
    from flamingo_vlm.model.flamingo import Flamingo

__all__ = [
    "DEFAULT_CACHE_DIR",
    "DemoSelector",
    "FeatureFn",
    "RandomDemos",
    "RicesDemos",
    "cached_features",
    "dataset_fingerprint",
    "exclusions",
    "model_fingerprint",
    "vision_feature_fn",
]

#: Where RICES features are cached unless told otherwise (``$FLAMINGO_CACHE/rices`` when set).
DEFAULT_CACHE_DIR = Path(os.environ.get("FLAMINGO_CACHE", Path.home() / ".cache" / "flamingo_vlm")) / "rices"

#: Media items -> (N, D) L2-normalised features.
FeatureFn = Callable[[Sequence[MediaRef]], torch.Tensor]


class DemoSelector(Protocol):
    """Picks the support indices shown before a query, in prompt order (the last is next to the query)."""

    mode: str

    def select(self, query: int, num_shots: int, seed: int) -> list[int]: ...


def exclusions(query_media: Sequence[MediaRef], support_media: Sequence[MediaRef]) -> list[tuple[int, ...]]:
    """For each query, the support indices that show the same media file(s) as the query."""
    by_key: dict[str, list[int]] = {}
    for index, media in enumerate(support_media):
        by_key.setdefault(media_key(media), []).append(index)
    return [tuple(by_key.get(media_key(media), ())) for media in query_media]


class RandomDemos:
    """Random demonstrations: seeded by ``(seed, query)``, drawn without replacement, in random order."""

    mode = "random"

    def __init__(self, support_size: int, exclude: Sequence[Sequence[int]]) -> None:
        self.support_size = support_size
        self.exclude = exclude

    def select(self, query: int, num_shots: int, seed: int) -> list[int]:
        if num_shots == 0:
            return []
        excluded = set(self.exclude[query])
        available = self.support_size - len(excluded)
        if num_shots > available:
            raise ValueError(f"{num_shots} demonstrations requested but only {available} support examples are "
                             f"available for query {query}")
        rng = np.random.default_rng([seed, query])
        # Drawing k + |excluded| distinct indices leaves at least k after dropping the excluded ones; the draw
        # order is random, so it is also the (shuffled) shot order.
        drawn = rng.choice(self.support_size, size=min(num_shots + len(excluded), self.support_size), replace=False)
        return [int(i) for i in drawn if int(i) not in excluded][:num_shots]


class RicesDemos:
    """RICES: the most similar support examples by feature cosine similarity, most similar last."""

    mode = "rices"

    def __init__(self, query_features: torch.Tensor, support_features: torch.Tensor,
                 exclude: Sequence[Sequence[int]]) -> None:
        if query_features.dim() != 2 or support_features.dim() != 2 or \
                query_features.shape[1] != support_features.shape[1]:
            raise ValueError(f"RICES features must be (N, D) with the same D; got {tuple(query_features.shape)} "
                             f"and {tuple(support_features.shape)}")
        self.query_features = torch.nn.functional.normalize(query_features.float(), dim=-1)  # (Nq, D)
        self.support_features = torch.nn.functional.normalize(support_features.float(), dim=-1)  # (Ns, D)
        self.exclude = exclude

    def select(self, query: int, num_shots: int, seed: int) -> list[int]:
        del seed  # RICES is deterministic
        if num_shots == 0:
            return []
        similarity = (self.support_features @ self.query_features[query]).numpy().astype(np.float64)  # (Ns,)
        excluded = list(self.exclude[query])
        similarity[excluded] = -np.inf
        available = len(similarity) - len(set(excluded))
        if num_shots > available:
            raise ValueError(f"{num_shots} demonstrations requested but only {available} support examples are "
                             f"available for query {query}")
        # Stable sort: among equally similar examples the lower index ranks higher.
        nearest = np.argsort(-similarity, kind="stable")[:num_shots]
        return [int(i) for i in nearest[::-1]]  # most similar last


# --------------------------------------------------------------------------------------------------
# Features and their on-disk cache
# --------------------------------------------------------------------------------------------------


def vision_feature_fn(model: Flamingo, batch_size: int = 64) -> FeatureFn:
    """RICES features from the model's own frozen vision encoder: patch features ``(F, P, D)`` of each media
    item averaged over patches and frames, L2-normalised -> ``(N, D)`` float32 on the CPU."""
    processor = model.processor.image_processor

    @torch.no_grad()
    def features(media: Sequence[MediaRef]) -> torch.Tensor:
        param = next(model.vision.parameters(), None)
        dtype = param.dtype if param is not None else torch.float32
        device = model.device
        out = []
        for start in range(0, len(media), batch_size):
            items = media[start:start + batch_size]
            pixels = [processor.preprocess_media(list(m) if isinstance(m, tuple) else m) for m in items]  # (F,3,S,S)
            counts = [p.shape[0] for p in pixels]
            flat = torch.cat(pixels).to(device=device, dtype=dtype)  # (sum F, 3, S, S)
            pooled = model.vision(flat).float().mean(dim=1)  # (sum F, D)
            per_item = torch.stack([chunk.mean(0) for chunk in pooled.split(counts)])  # (n, D)
            out.append(torch.nn.functional.normalize(per_item, dim=-1).cpu())
        return torch.cat(out)

    return features


def model_fingerprint(model: Flamingo) -> str:
    """A hash identifying what RICES features depend on: the vision encoder's weights and the preprocessing.

    Weights enter through their names, shapes, dtypes, float64 sums and first values: cheap for any encoder
    size, and any real change of the weights changes it.
    """
    digest = hashlib.sha256()
    digest.update(type(model.vision.tower).__name__.encode())
    digest.update(json.dumps(model.processor.image_processor.to_dict(), sort_keys=True, default=str).encode())
    digest.update(repr((model.vision.feature_layer, model.vision.drop_cls)).encode())
    with torch.no_grad():
        for name, tensor in [*model.vision.named_parameters(), *model.vision.named_buffers()]:
            flat = tensor.detach().flatten()
            summary = (name, tuple(tensor.shape), str(tensor.dtype), float(flat.double().sum()),
                       [float(v) for v in flat[:8].double()])
            digest.update(repr(summary).encode())
    return digest.hexdigest()


def dataset_fingerprint(media: Sequence[MediaRef]) -> str:
    """A hash of the media list: every file's resolved path, size and modification time, in order."""
    digest = hashlib.sha256()
    for item in media:
        for path in item if isinstance(item, tuple) else (item,):
            stat = Path(path).stat()
            digest.update(f"{media_key(path)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        digest.update(b"\1")
    return digest.hexdigest()


def cached_features(
    media: Sequence[MediaRef],
    feature_fn: FeatureFn,
    *,
    model_key: str,
    cache_dir: str | os.PathLike | None = None,
) -> torch.Tensor:
    """Features of ``media`` -> ``(N, D)``, read from the cache file when it matches, else computed and saved.

    The file is ``cache_dir/rices-{model_key[:16]}-{dataset_key[:16]}.safetensors``; its metadata repeats the
    full keys and the item count, which are checked on reading, so a stale or foreign file is recomputed.
    """
    directory = Path(cache_dir) if cache_dir is not None else DEFAULT_CACHE_DIR
    data_key = dataset_fingerprint(media)
    path = directory / f"rices-{model_key[:16]}-{data_key[:16]}.safetensors"
    expected = {"model": model_key, "dataset": data_key, "count": str(len(media))}
    if path.is_file():
        try:
            with safe_open(str(path), framework="pt") as handle:
                metadata = handle.metadata() or {}
                if all(metadata.get(k) == v for k, v in expected.items()):
                    features = handle.get_tensor("features")
                    if features.shape[0] == len(media):
                        return features
        except (OSError, ValueError, RuntimeError):
            pass  # unreadable or truncated: recompute and overwrite
    features = feature_fn(media).float().cpu().contiguous()
    if features.dim() != 2 or features.shape[0] != len(media):
        raise ValueError(f"feature function returned shape {tuple(features.shape)} for {len(media)} media items; "
                         f"expected (N, D)")
    directory.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    save_file({"features": features}, str(tmp), metadata=expected)
    os.replace(tmp, path)  # atomic: a concurrent reader sees the old file or the new one, never half of one
    return features
