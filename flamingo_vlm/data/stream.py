"""Endless, deterministic, resumable streams of training batches from WebDataset shards.

Per dataset, each reader (rank x DataLoader worker) walks the shards epoch after epoch:

    raw records (bytes, read with webdataset's tar iterators)
      -> shuffle buffer seeded by (seed, epoch)            identical on every reader when splitting records
      -> this reader's share (whole shards, or every N-th record)
      -> [skip the records consumed before a resume: no decoding]
      -> decode + build the sequence (a corrupt sample is skipped, counted per reason, logged with shard and key)
      -> [interleaved with documents_per_row > 1: consecutive windows joined into one row]
      -> batches, each tagged with the reader that made it and how far that reader has read

The trainer keeps, per reader, the position after the last batch it actually used; resuming restarts each reader
there. DataLoader workers hand out batches round-robin, so on resume the workers are rotated to continue the
round-robin exactly where it stopped. Together with per-sample seeding of augmentation this makes a resumed run
see exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import braceexpand
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from webdataset.tariterators import group_by_keys, tar_file_iterator

from flamingo_vlm.data.formats import CorruptSample, decode_sample
from flamingo_vlm.data.sequences import SequenceBuilder, TrainingExample, collate, pack_examples
from flamingo_vlm.processing.processor import FlamingoProcessor
from flamingo_vlm.training.config import DatasetConfig

log = logging.getLogger(__name__)


def expand_shards(pattern: str) -> list[str]:
    """'a-{000..002}.tar::b.tar' -> ['a-000.tar', 'a-001.tar', 'a-002.tar', 'b.tar']."""
    urls = [url for part in pattern.split("::") if part.strip() for url in braceexpand.braceexpand(part.strip())]
    if not urls:
        raise ValueError(f"Shard pattern {pattern!r} names no files.")
    return urls


def read_raw_records(url: str) -> Iterator[dict[str, Any]]:
    """Raw samples (key + extension -> bytes) of one tar shard, as WebDataset groups them."""
    try:
        stream = open(url, "rb")
    except OSError as error:
        raise ValueError(f"Cannot open shard {url}: {error}") from error
    with stream:
        files = ({**f, "__url__": url} for f in tar_file_iterator(stream))
        yield from group_by_keys(files)


@dataclass
class ReaderState:
    """Where one reader (rank, logical worker) stands: records consumed in the current epoch."""

    epoch: int = 0
    position: int = 0


@dataclass
class Batch:
    """A collated batch plus the bookkeeping the trainer needs to resume and to report skipped samples."""

    tensors: dict[str, torch.Tensor]
    worker: int
    state: ReaderState
    skipped: Counter = field(default_factory=Counter)
    num_tokens: int = 0


class ShardStream(IterableDataset):
    """Endless stream of ``Batch`` for one dataset on one rank; see the module docstring."""

    def __init__(self, dataset: DatasetConfig, processor: FlamingoProcessor, *, seed: int, rank: int,
                 world_size: int, num_workers: int, start: dict[int, ReaderState] | None = None,
                 worker_offset: int = 0) -> None:
        super().__init__()
        self.dataset = dataset
        self.processor = processor
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.num_workers = max(1, num_workers)
        self.start = start or {}
        self.worker_offset = worker_offset
        self.urls = expand_shards(dataset.shards)
        readers = world_size * self.num_workers
        self.split_records = dataset.split == "records" or (dataset.split == "auto" and len(self.urls) < readers)

    def __iter__(self) -> Iterator[Batch]:
        info = get_worker_info()
        physical = info.id if info is not None else 0
        logical = (physical + self.worker_offset) % self.num_workers
        slot = self.rank * self.num_workers + logical
        readers = self.world_size * self.num_workers
        state = ReaderState(**vars(self.start.get(logical, ReaderState())))
        builder = SequenceBuilder(self.processor, max_tokens=self.dataset.max_tokens,
                                  max_media=self.dataset.max_media,
                                  leading_space_prob=self.dataset.leading_space_prob, rng=random.Random(0))
        pending: list[TrainingExample] = []
        parts: list[TrainingExample] = []  # windows waiting to fill a packed row (documents_per_row > 1)
        skipped: Counter = Counter()
        while True:
            usable_this_epoch = 0
            for index, raw in enumerate(self._epoch_records(state.epoch, slot, readers)):
                if index < state.position:
                    continue  # consumed before the resume; not decoded
                state.position = index + 1
                example = self._build(raw, builder, state.epoch, skipped)
                if example is None:
                    continue
                usable_this_epoch += 1
                if self.dataset.documents_per_row > 1:
                    parts.append(example)
                    if len(parts) < self.dataset.documents_per_row:
                        continue
                    example, parts = pack_examples(parts), []
                pending.append(example)
                if len(pending) == self.dataset.batch_size:
                    tensors = collate(pending, self.processor.tokenizer.pad_token_id,
                                      pad_to_multiple_of=self.dataset.pad_to_multiple_of,
                                      max_length=self.dataset.max_tokens * self.dataset.documents_per_row)
                    yield Batch(tensors=tensors, worker=logical, state=ReaderState(state.epoch, state.position),
                                skipped=skipped, num_tokens=int(tensors["attention_mask"].sum()))
                    pending, skipped = [], Counter()
            if usable_this_epoch == 0 and state.position == 0:
                raise ValueError(f"Dataset {self.dataset.name!r}: reader {slot} got no usable samples from "
                                 f"{len(self.urls)} shard(s) (skipped: {dict(skipped) or 'none'}).")
            state = ReaderState(epoch=state.epoch + 1, position=0)

    def _epoch_records(self, epoch: int, slot: int, readers: int) -> Iterator[dict[str, Any]]:
        rng = random.Random(f"{self.seed}/{self.dataset.name}/{epoch}")
        urls = list(self.urls)
        rng.shuffle(urls)
        if not self.split_records:
            urls = urls[slot::readers]
        records = (raw for url in urls for raw in read_raw_records(url))
        if self.split_records:
            # Same shuffle on every reader, then every N-th record: the readers' union is one global order.
            records = (raw for i, raw in enumerate(_shuffle(records, self.dataset.shuffle_buffer, rng))
                       if i % readers == slot)
            yield from records
        else:
            yield from _shuffle(records, self.dataset.shuffle_buffer, random.Random(f"{rng.random()}/{slot}"))

    def _build(self, raw: dict[str, Any], builder: SequenceBuilder, epoch: int,
               skipped: Counter) -> TrainingExample | None:
        key, url = raw.get("__key__", "?"), raw.get("__url__", "?")
        # Augmentation draws depend only on the sample, so any reader layout sees the same sequence; on the shard's
        # file name, not its path, so the same shards copied to another folder give the same run.
        builder.rng.seed(f"{self.seed}/{self.dataset.name}/{epoch}/{url.rsplit('/', 1)[-1]}/{key}")
        try:
            sample = decode_sample(self.dataset.kind, raw, max_images=self.dataset.max_images_per_sample,
                                   image_processor=self.processor.image_processor)
            return builder(sample)
        except CorruptSample as error:
            skipped[error.reason] += 1
            log.warning("skipped sample %s in %s (%s): %s", key, url, error.reason, error.detail)
            return None
        except ValueError as error:  # e.g. a video with more frames than the model takes
            skipped["invalid"] += 1
            log.warning("skipped sample %s in %s (invalid): %s", key, url, error)
            return None


def _shuffle(records: Iterator[dict[str, Any]], buffer_size: int, rng: random.Random) -> Iterator[dict[str, Any]]:
    """Reservoir-style shuffle buffer: deterministic given ``rng``."""
    if buffer_size <= 1:
        yield from records
        return
    buffer: list[dict[str, Any]] = []
    for record in records:
        buffer.append(record)
        if len(buffer) >= buffer_size:
            index = rng.randrange(len(buffer))
            buffer[index], buffer[-1] = buffer[-1], buffer[index]
            yield buffer.pop()
    rng.shuffle(buffer)
    yield from buffer


def make_loader(stream: ShardStream) -> DataLoader:
    """A DataLoader over already-batched ``Batch`` objects (workers produce whole batches)."""
    workers = stream.dataset.num_workers
    return DataLoader(stream, batch_size=None, num_workers=workers, persistent_workers=workers > 0,
                      prefetch_factor=2 if workers > 0 else None)
