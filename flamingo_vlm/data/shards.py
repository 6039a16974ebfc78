"""Writing a local dataset (``sources.py``) into WebDataset tar shards for training.

Shards are named ``{prefix}-000000.tar``, ``{prefix}-000001.tar``, ... (``prefix`` defaults to the kind), hold
``samples_per_shard`` samples each (the last one fewer) and contain, per sample, the files ``{key}.{ext}`` of the
layouts described in ``formats.py``. Each shard is written under a temporary name and renamed when complete, so a
reader never sees a half-written shard. Samples are decoded once before writing (``validate``): corrupt ones are
skipped and counted by reason instead of failing a training run later.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from tqdm import tqdm
from webdataset import TarWriter

from flamingo_vlm.data.formats import KINDS, CorruptSample, decode_sample
from flamingo_vlm.data.sources import count_source, iter_source

__all__ = ["ShardStats", "brace_pattern", "data_command", "write_shards"]

log = logging.getLogger(__name__)

_PREFIX = re.compile(r"^[A-Za-z0-9_.-]+$")
_MAX_LOGGED_SKIPS = 20


def tar_writer(target: str | BinaryIO) -> TarWriter:
    """A WebDataset tar writer whose output depends only on the samples written (values must be bytes already).

    The modification time is fixed so the same data gives byte-identical shards, and is an int: a float makes
    tarfile add a PAX header block before every member, which makes shards a third larger and is parsed in
    Python by every reader.
    """
    return TarWriter(target, encoder=False, mtime=0)


@dataclass
class ShardStats:
    """What ``write_shards`` did: samples written and samples skipped per ``CorruptSample`` reason."""

    written: int = 0
    skipped: Counter = field(default_factory=Counter)


def write_shards(kind: str, source: str | os.PathLike, out_dir: str | os.PathLike, *,
                 samples_per_shard: int = 1000, prefix: str | None = None, validate: bool = True,
                 overwrite: bool = False, stats: ShardStats | None = None, progress: bool = False) -> list[Path]:
    """Write the samples of a local dataset into tar shards; return the shard paths in order.

    Args:
        kind: ``"pairs"``, ``"interleaved"``, ``"video"`` or ``"text"``.
        source: a folder or JSONL file as accepted by ``flamingo_vlm.data.sources.iter_source``.
        out_dir: created if needed.
        samples_per_shard: samples per tar file.
        prefix: shard file name prefix; defaults to ``kind``.
        validate: decode each sample first and skip (and count) the corrupt ones.
        overwrite: replace existing ``{prefix}-NNNNNN.tar`` shards in ``out_dir`` (stale ones beyond the new count
            are deleted so a glob cannot mix two datasets); without it, existing shards are an error.
        stats: filled with the number of samples written and skipped per reason.
        progress: show a tqdm progress bar.

    Raises:
        ValueError: for a bad argument or source, or existing shards without ``overwrite``.
    """
    if kind not in KINDS:
        raise ValueError(f"Unknown sample kind {kind!r}; expected one of {KINDS}.")
    if samples_per_shard < 1:
        raise ValueError(f"samples_per_shard must be >= 1, got {samples_per_shard}.")
    prefix = kind if prefix is None else prefix
    if not _PREFIX.match(prefix):
        raise ValueError(f"Shard prefix {prefix!r} must be letters, digits, '_', '-' or '.'.")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shard_name = re.compile(re.escape(prefix) + r"-\d{6}\.tar$")
    existing = sorted(p for p in out.iterdir() if shard_name.match(p.name))
    if existing and not overwrite:
        raise ValueError(f"{out} already holds {len(existing)} {prefix}-NNNNNN.tar shard(s); pass overwrite=True "
                         f"(--overwrite) or choose another folder or prefix.")
    stats = stats if stats is not None else ShardStats()
    samples = iter_source(kind, source)
    if progress:
        samples = tqdm(samples, total=count_source(kind, source), unit="sample", desc=f"{prefix} shards")

    shards: list[Path] = []
    writer: _ShardFile | None = None
    try:
        for raw in samples:
            if validate and not _is_valid(kind, raw, stats):
                continue
            if writer is None:
                writer = _ShardFile(out / f"{prefix}-{len(shards):06d}.tar")
            writer.write(raw)
            stats.written += 1
            if writer.count == samples_per_shard:
                shards.append(writer.commit())
                writer = None
        if writer is not None:
            shards.append(writer.commit())
            writer = None
    finally:
        if writer is not None:
            writer.abort()
    for stale in existing:
        if stale not in shards:
            stale.unlink(missing_ok=True)
    return shards


def brace_pattern(paths: list[Path] | list[str]) -> str:
    """``[out/pairs-000000.tar, ..., out/pairs-000003.tar]`` -> ``out/pairs-{000000..000003}.tar``.

    The shards must be consecutive ``{prefix}-NNNNNN.tar`` files of one folder, as ``write_shards`` makes them.
    """
    if not paths:
        raise ValueError("No shards to describe.")
    paths = [Path(p) for p in paths]
    if len(paths) == 1:
        return str(paths[0])
    first, last = paths[0], paths[-1]
    head, low = first.name[: -len("000000.tar")], first.name[-len("000000.tar"): -len(".tar")]
    high = last.name[-len("000000.tar"): -len(".tar")]
    return str(first.parent / f"{head}{{{low}..{high}}}.tar")


def data_command(kind: str, source: str, out_dir: str, samples_per_shard: int, overwrite: bool = False) -> int:
    """Convert a local dataset (folder or JSONL) into WebDataset shards: ``flamingo data KIND SOURCE OUT_DIR``.

    Prints the shard pattern to put in a training config, and how many samples were skipped and why. Returns 0 when
    at least one sample was written, 1 otherwise.
    """
    stats = ShardStats()
    shards = write_shards(kind, source, out_dir, samples_per_shard=samples_per_shard, overwrite=overwrite,
                          stats=stats, progress=True)
    skipped = sum(stats.skipped.values())
    if skipped:
        reasons = ", ".join(f"{reason}: {n}" for reason, n in stats.skipped.most_common())
        print(f"skipped {skipped} corrupt sample(s) ({reasons})", file=sys.stderr)
    if not shards:
        print(f"error: no usable {kind} samples in {source}", file=sys.stderr)
        return 1
    print(f"wrote {stats.written} {kind} sample(s) to {len(shards)} shard(s)")
    print(brace_pattern(shards))
    return 0


# ---------------------------------------------------------------------- helpers


def _is_valid(kind: str, raw: dict[str, Any], stats: ShardStats) -> bool:
    try:
        # No image limit here: how many images a training sequence keeps is a training-time setting.
        decode_sample(kind, raw, max_images=None)
    except CorruptSample as error:
        stats.skipped[error.reason] += 1
        if sum(stats.skipped.values()) <= _MAX_LOGGED_SKIPS:
            log.warning("skipping %s (%s): %s", raw.get("__source__", raw.get("__key__")), error.reason,
                        error.detail)
        return False
    return True


class _ShardFile:
    """One tar shard written to a temporary name in the target folder and renamed into place on commit."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # Same folder, so os.replace is an atomic rename; a unique name keeps concurrent writers apart.
        self.temporary = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
        self._file: BinaryIO = open(self.temporary, "xb")  # noqa: SIM115 (closed by commit or abort)
        self._tar = tar_writer(self._file)
        self.count = 0

    def write(self, raw: dict[str, Any]) -> None:
        entry = {"__key__": raw["__key__"]}
        entry.update({name: value for name, value in raw.items() if not name.startswith("__")})
        self._tar.write(entry)
        self.count += 1

    def commit(self) -> Path:
        self._tar.close()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self.temporary, self.path)
        return self.path

    def abort(self) -> None:
        try:
            self._tar.close()
            self._file.close()
        finally:
            self.temporary.unlink(missing_ok=True)
