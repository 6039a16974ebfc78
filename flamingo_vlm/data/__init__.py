"""Training data: WebDataset sample formats, sequence building, and writing shards from local datasets.

- ``formats``: raw WebDataset sample (extension -> bytes) -> ``PairSample`` / ``InterleavedSample`` / ``VideoSample``
  / ``TextSample``, or ``CorruptSample`` with a reason slug.
- ``sequences``: decoded sample -> ``TrainingExample`` (tokens, labels, pixels) in the paper's layouts; ``collate``; ``pack_examples`` joins windows into one row.
- ``sources``: small local datasets (folders, JSONL) as raw samples.
- ``shards``: ``write_shards`` / ``data_command`` (``flamingo data KIND SOURCE OUT_DIR``).
"""

from flamingo_vlm.data.formats import (
    IMAGE_EXTENSIONS,
    KINDS,
    REASONS,
    CorruptSample,
    InterleavedSample,
    Kind,
    PairSample,
    Sample,
    TextSample,
    VideoSample,
    decode_image,
    decode_sample,
)
from flamingo_vlm.data.sequences import (
    IGNORE_INDEX,
    SequenceBuilder,
    TrainingExample,
    collate,
    pack_examples,
    sample_frame_indices,
)
from flamingo_vlm.data.shards import ShardStats, brace_pattern, data_command, write_shards
from flamingo_vlm.data.sources import count_source, iter_source

__all__ = [
    "IGNORE_INDEX",
    "IMAGE_EXTENSIONS",
    "KINDS",
    "REASONS",
    "CorruptSample",
    "InterleavedSample",
    "Kind",
    "PairSample",
    "Sample",
    "SequenceBuilder",
    "ShardStats",
    "TextSample",
    "TrainingExample",
    "VideoSample",
    "brace_pattern",
    "collate",
    "count_source",
    "data_command",
    "decode_image",
    "decode_sample",
    "iter_source",
    "pack_examples",
    "sample_frame_indices",
    "write_shards",
]
