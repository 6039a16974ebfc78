"""Local folder/JSONL -> tar shards -> WebDataset's own readers -> decode_sample gives back the same data."""

from __future__ import annotations

import tarfile
from pathlib import Path

import braceexpand
import numpy as np
import pytest

from flamingo_vlm.data import (
    InterleavedSample,
    PairSample,
    ShardStats,
    TextSample,
    VideoSample,
    brace_pattern,
    data_command,
    decode_sample,
    iter_source,
    write_shards,
)
from tests.data.helpers import image_array, read_shard, save_image, write_jsonl


def _decode_all(kind: str, shards: list[Path]) -> list:
    return [decode_sample(kind, raw, max_images=None) for shard in shards for raw in read_shard(shard)]


def _pixels(image) -> np.ndarray:
    return np.asarray(image)


def test_pairs_folder_round_trip(tmp_path: Path) -> None:
    source = tmp_path / "pairs"
    arrays = {}
    for i, name in enumerate(["b.cat", "a dog", "c-bird", "d_fish", "e"]):  # dots and spaces in names
        arrays[name] = image_array(i)
        save_image(source / f"{name}.png", arrays[name])
        (source / f"{name}.txt").write_text(f"caption of {name}\n", encoding="utf-8")
    shards = write_shards("pairs", source, tmp_path / "out", samples_per_shard=2)
    assert [p.name for p in shards] == ["pairs-000000.tar", "pairs-000001.tar", "pairs-000002.tar"]
    assert [len(read_shard(p)) for p in shards] == [2, 2, 1]
    samples = _decode_all("pairs", shards)
    assert all(isinstance(s, PairSample) for s in samples)
    by_text = {s.text: s for s in samples}
    assert set(by_text) == {f"caption of {name}" for name in arrays}
    for name, array in arrays.items():
        np.testing.assert_array_equal(_pixels(by_text[f"caption of {name}"].image), array)
    # Keys are unique, free of dots, and the tar holds exactly {key}.png and {key}.txt per sample.
    raws = [raw for p in shards for raw in read_shard(p)]
    assert len({raw["__key__"] for raw in raws}) == 5
    assert all("." not in raw["__key__"] and set(raw) - {"__key__", "__url__"} == {"png", "txt"} for raw in raws)


def test_shards_are_plain_ustar_and_byte_identical_across_writes(tmp_path: Path) -> None:
    # No PAX header per member (a float mtime would add one, and readers parse each in Python); the same data gives
    # the same bytes.
    source = tmp_path / "pairs"
    for i in range(3):
        save_image(source / f"{i}.png", image_array(i))
        (source / f"{i}.txt").write_text(f"caption {i}\n", encoding="utf-8")
    first = write_shards("pairs", source, tmp_path / "one")
    second = write_shards("pairs", source, tmp_path / "two")
    assert [a.read_bytes() for a in first] == [b.read_bytes() for b in second]
    with tarfile.open(first[0]) as archive:
        members = archive.getmembers()
    assert len(members) == 6 and all(m.pax_headers == {} and m.mtime == 0 and m.isfile() for m in members)


def test_pairs_jsonl_round_trip_with_relative_absolute_and_reencoded_images(tmp_path: Path) -> None:
    a, b, c = image_array(1), image_array(2), image_array(3)
    save_image(tmp_path / "img" / "a.png", a)
    save_image(tmp_path / "elsewhere" / "b.png", b)
    save_image(tmp_path / "img" / "c.bmp", c)  # not a shard extension: re-encoded losslessly as PNG
    source = write_jsonl(tmp_path / "pairs.jsonl", [
        {"image": "img/a.png", "text": "first"},
        "",
        {"image": str(tmp_path / "elsewhere" / "b.png"), "caption": "second"},
        {"image": "img/c.bmp", "text": "third"},
    ])
    shards = write_shards("pairs", source, tmp_path / "out", prefix="laion")
    assert [p.name for p in shards] == ["laion-000000.tar"]
    samples = _decode_all("pairs", shards)
    assert [s.text for s in samples] == ["first", "second", "third"]
    for sample, array in zip(samples, (a, b, c), strict=True):
        np.testing.assert_array_equal(_pixels(sample.image), array)


def test_interleaved_jsonl_round_trip(tmp_path: Path) -> None:
    arrays = [image_array(40 + i) for i in range(4)]
    for i, array in enumerate(arrays):
        save_image(tmp_path / "docs" / f"photo {i}.PNG", array)
    records = [
        {"text_list": ["One.", "Two.", "Three."], "url": "http://x",
         "image_info": [{"image_name": "docs/photo 0.PNG", "matched_text_index": 2, "matched_sim": 0.3},
                        {"image_name": "docs/photo 1.PNG", "matched_text_index": 0}]},
        {"text_list": ["Only sentence."],
         "image_info": [{"image_name": "docs/photo 2.PNG", "matched_text_index": 0},
                        {"image_name": "docs/photo 3.PNG", "matched_text_index": 0}]},
    ]
    shards = write_shards("interleaved", write_jsonl(tmp_path / "docs.jsonl", records), tmp_path / "out")
    raws = read_shard(shards[0])
    # Convention: image i of a document is the file {key}.img{i}.{ext}, named so in the JSON's image_name.
    assert set(raws[0]) - {"__key__", "__url__"} == {"json", "img0.png", "img1.png"}
    samples = _decode_all("interleaved", shards)
    assert all(isinstance(s, InterleavedSample) for s in samples)
    assert samples[0].texts == ["One.", "Two.", "Three."] and samples[1].texts == ["Only sentence."]
    assert [i for i, _ in samples[0].images] == [0, 2] and [i for i, _ in samples[1].images] == [0, 0]
    expected = [[arrays[1], arrays[0]], [arrays[2], arrays[3]]]
    for sample, arrays_in_order in zip(samples, expected, strict=True):
        for (_, image), array in zip(sample.images, arrays_in_order, strict=True):
            np.testing.assert_array_equal(_pixels(image), array)


def test_video_jsonl_round_trip_with_frame_lists_and_frame_folders(tmp_path: Path) -> None:
    listed = [image_array(50 + i) for i in range(3)]
    for i, array in enumerate(listed):
        save_image(tmp_path / "v1" / f"x{i}.png", array)
    folder = {n: image_array(60 + n) for n in (1, 2, 10)}
    for n, array in folder.items():
        save_image(tmp_path / "v2" / f"f{n}.png", array)  # natural order: f1, f2, f10
    records = [{"frames": [f"v1/x{i}.png" for i in (2, 0, 1)], "text": "listed order"},
               {"frames_dir": "v2", "text": "folder order"}]
    shards = write_shards("video", write_jsonl(tmp_path / "videos.jsonl", records), tmp_path / "out")
    samples = _decode_all("video", shards)
    assert all(isinstance(s, VideoSample) for s in samples)
    assert [s.text for s in samples] == ["listed order", "folder order"]
    for frame, array in zip(samples[0].frames, [listed[2], listed[0], listed[1]], strict=True):
        np.testing.assert_array_equal(_pixels(frame), array)
    for frame, n in zip(samples[1].frames, (1, 2, 10), strict=True):
        np.testing.assert_array_equal(_pixels(frame), folder[n])
    assert sorted(set(read_shard(shards[0])[0]) - {"__key__", "__url__"}) == [
        "frame000.png", "frame001.png", "frame002.png", "txt"]


def test_text_round_trip_from_lines_and_from_jsonl(tmp_path: Path) -> None:
    lines = tmp_path / "corpus.txt"
    lines.write_text("a pink heart. this is a stet.<|endofchunk|>a pink heart. this is a stet.\n\n"
                     "two circles.\r\n  \nthe end\n", encoding="utf-8")
    shards = write_shards("text", lines, tmp_path / "lines", samples_per_shard=2)
    samples = _decode_all("text", shards)
    assert all(isinstance(s, TextSample) for s in samples)
    assert [s.text for s in samples] == ["a pink heart. this is a stet.<|endofchunk|>a pink heart. this is a stet.",
                                         "two circles.", "the end"]  # blank lines are not documents
    jsonl = write_jsonl(tmp_path / "docs.jsonl", [{"text": "one document.", "source": "x"}, {"text": 3}, {"id": 1}])
    stats = ShardStats()
    shards = write_shards("text", jsonl, tmp_path / "jsonl", stats=stats)
    assert [s.text for s in _decode_all("text", shards)] == ["one document."]
    assert dict(stats.skipped) == {"bad_json": 1, "missing_text": 1}


def test_corrupt_sources_are_skipped_and_counted(tmp_path: Path) -> None:
    source = tmp_path / "pairs"
    save_image(source / "good.jpg", image_array(1))
    (source / "good.txt").write_text("fine")
    save_image(source / "nocaption.png", image_array(2))
    (source / "broken.jpg").write_bytes((source / "good.jpg").read_bytes()[:50])
    (source / "broken.txt").write_text("truncated")
    stats = ShardStats()
    shards = write_shards("pairs", source, tmp_path / "out", stats=stats)
    assert stats.written == 1 and dict(stats.skipped) == {"missing_text": 1, "bad_image": 1}
    assert [s.text for s in _decode_all("pairs", shards)] == ["fine"]
    # Without validation everything is written; the training stream counts the failures instead.
    unvalidated = write_shards("pairs", source, tmp_path / "raw", validate=False)
    assert sum(len(read_shard(p)) for p in unvalidated) == 3


def test_bad_jsonl_lines_and_missing_files_get_the_decoder_reasons(tmp_path: Path) -> None:
    save_image(tmp_path / "ok.png", image_array(1))
    source = write_jsonl(tmp_path / "docs.jsonl", [
        "{broken",
        {"text_list": ["a"], "image_info": [{"image_name": "gone.png", "matched_text_index": 0}]},
        {"text_list": ["a"], "image_info": [{"image_name": "ok.png", "matched_text_index": 0}]},
    ])
    stats = ShardStats()
    write_shards("interleaved", source, tmp_path / "out", stats=stats)
    assert stats.written == 1 and dict(stats.skipped) == {"bad_json": 1, "missing_image": 1}
    sources = [raw["__source__"] for raw in iter_source("interleaved", source)]
    assert sources == [f"{source}:1", f"{source}:2", f"{source}:3"]


def test_writes_are_atomic_and_existing_shards_are_protected(tmp_path: Path) -> None:
    source = tmp_path / "pairs"
    for i in range(5):
        save_image(source / f"{i}.png", image_array(i))
        (source / f"{i}.txt").write_text(f"t{i}")
    out = tmp_path / "out"
    first = write_shards("pairs", source, out, samples_per_shard=1)
    assert len(first) == 5 and sorted(p.name for p in out.iterdir()) == sorted(p.name for p in first)
    with pytest.raises(ValueError, match="overwrite"):
        write_shards("pairs", source, out, samples_per_shard=1)
    second = write_shards("pairs", source, out, samples_per_shard=2, overwrite=True)
    # Stale shards from the first run are gone, and no temporary file is left behind.
    assert sorted(p.name for p in out.iterdir()) == ["pairs-000000.tar", "pairs-000001.tar", "pairs-000002.tar"]
    assert second == [out / n for n in ("pairs-000000.tar", "pairs-000001.tar", "pairs-000002.tar")]


def test_failed_write_leaves_no_partial_shard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "pairs"
    for i in range(3):
        save_image(source / f"{i}.png", image_array(i))
        (source / f"{i}.txt").write_text(f"t{i}")
    import flamingo_vlm.data.shards as shards_module

    real = shards_module.iter_source

    def failing(kind, src):
        for index, raw in enumerate(real(kind, src)):
            if index == 2:
                raise KeyboardInterrupt
            yield raw

    monkeypatch.setattr(shards_module, "iter_source", failing)
    with pytest.raises(KeyboardInterrupt):
        write_shards("pairs", source, tmp_path / "out", samples_per_shard=10)
    assert list((tmp_path / "out").iterdir()) == []


def test_brace_pattern_expands_to_the_shards(tmp_path: Path) -> None:
    paths = [tmp_path / f"pairs-{i:06d}.tar" for i in range(4)]
    pattern = brace_pattern(paths)
    assert pattern == str(tmp_path / "pairs-{000000..000003}.tar")
    assert list(braceexpand.braceexpand(pattern)) == [str(p) for p in paths]
    assert brace_pattern(paths[:1]) == str(paths[0])


def test_data_command_prints_the_pattern(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "pairs"
    for i in range(3):
        save_image(source / f"{i}.png", image_array(i))
        (source / f"{i}.txt").write_text(f"t{i}")
    (source / "x.png").write_bytes(b"junk")
    (source / "x.txt").write_text("junk")
    assert data_command("pairs", str(source), str(tmp_path / "out"), 2) == 0
    captured = capsys.readouterr()
    pattern = captured.out.strip().splitlines()[-1]
    assert pattern == str(tmp_path / "out" / "pairs-{000000..000001}.tar")
    assert "bad_image: 1" in captured.err


def test_data_command_fails_when_nothing_is_usable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = write_jsonl(tmp_path / "pairs.jsonl", [{"image": "missing.png", "text": "t"}])
    assert data_command("pairs", str(source), str(tmp_path / "out"), 10) == 1
    assert "missing_image: 1" in capsys.readouterr().err
    with pytest.raises(ValueError, match="not found"):
        data_command("pairs", str(tmp_path / "nope.jsonl"), str(tmp_path / "out"), 10)
    with pytest.raises(ValueError, match="JSONL"):
        write_shards("video", tmp_path, tmp_path / "out2")
