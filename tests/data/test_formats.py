"""decode_sample: the four layouts, and every corrupt case raising CorruptSample with its reason."""

from __future__ import annotations

import base64
import json
import pickle

import numpy as np
import pytest
from PIL import Image

from flamingo_vlm.data import (
    REASONS,
    CorruptSample,
    InterleavedSample,
    PairSample,
    TextSample,
    VideoSample,
    decode_sample,
)
from flamingo_vlm.processing.images import ImageProcessor
from tests.data.helpers import encode, image_array


def _pair(**files: bytes) -> dict:
    return {"__key__": "k0", "__url__": "mem", **files}


def _doc(texts: list[str], infos: list[dict], **files: bytes) -> dict:
    return _pair(json=json.dumps({"text_list": texts, "image_info": infos}).encode(), **files)


def _explode() -> None:
    raise AssertionError("a pickle was loaded")


class _Payload:
    def __reduce__(self):  # unpickling calls _explode
        return (_explode, ())


# ---------------------------------------------------------------------- valid samples


def test_pair_from_png_and_txt_is_pixel_exact_rgb() -> None:
    array = image_array(1)
    sample = decode_sample("pairs", _pair(png=encode(array), txt=b"  a red circle.\n"), max_images=5)
    assert isinstance(sample, PairSample) and sample.key == "k0"
    assert sample.text == "a red circle."
    assert sample.image.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(sample.image), array)


@pytest.mark.parametrize("field", ["caption", "text"])
def test_pair_caption_from_json(field: str) -> None:
    raw = _pair(jpg=encode(image_array(2), "JPEG"), json=json.dumps({field: "two cats", "url": "x"}).encode())
    assert decode_sample("pairs", raw, max_images=5).text == "two cats"


def test_txt_caption_wins_over_json_metadata() -> None:
    raw = _pair(webp=encode(image_array(3), "WEBP"), txt=b"from txt", json=b'{"caption": "from json"}')
    assert decode_sample("pairs", raw, max_images=5).text == "from txt"


def test_transparency_is_filled_with_the_mean_colour_not_black() -> None:
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)  # fully transparent black
    raw = _pair(png=encode(rgba), txt=b"nothing")
    image = decode_sample("pairs", raw, max_images=5).image
    mean = tuple(round(v * 255) for v in ImageProcessor().image_mean)
    assert image.mode == "RGB" and image.getpixel((0, 0)) == mean


def test_pickles_in_a_sample_are_never_loaded() -> None:
    raw = _pair(png=encode(image_array(4)), txt=b"ok", pyd=pickle.dumps(_Payload()), pickle=pickle.dumps(_Payload()))
    assert decode_sample("pairs", raw, max_images=5).text == "ok"


def test_interleaved_images_sorted_by_matched_sentence() -> None:
    arrays = [image_array(10 + i) for i in range(3)]
    infos = [{"image_name": "img0.png", "matched_text_index": 2}, {"image_name": "img1.png", "matched_text_index": 0},
             {"image_name": "img2.png", "matched_text_index": 2}]
    raw = _doc(["a", "b", "c"], infos, **{f"img{i}.png": encode(a) for i, a in enumerate(arrays)})
    sample = decode_sample("interleaved", raw, max_images=5)
    assert isinstance(sample, InterleavedSample) and sample.texts == ["a", "b", "c"]
    assert [index for index, _ in sample.images] == [0, 2, 2]
    # Stable: the two images of sentence 2 keep their listed order (img0 before img2).
    for (_, image), expected in zip(sample.images, [arrays[1], arrays[0], arrays[2]], strict=True):
        np.testing.assert_array_equal(np.asarray(image), expected)


def test_interleaved_image_names_match_lowercased_extensions_and_inline_base64() -> None:
    a, b = image_array(20), image_array(21)
    inline = base64.b64encode(encode(b)).decode()
    infos = [{"image_name": "IMG0.PNG", "matched_text_index": 0},
             {"image_name": "elsewhere.png", "matched_text_index": 1, "image_base64": inline}]
    # WebDataset lower-cases extensions, so the file written as {key}.IMG0.PNG is read back as "img0.png".
    sample = decode_sample("interleaved", _doc(["x", "y"], infos, **{"img0.png": encode(a)}), max_images=5)
    np.testing.assert_array_equal(np.asarray(sample.images[0][1]), a)
    np.testing.assert_array_equal(np.asarray(sample.images[1][1]), b)


def test_video_frames_ordered_by_number_not_by_name() -> None:
    arrays = {n: image_array(30 + n) for n in (0, 2, 10)}
    raw = _pair(txt=b"a moving star", **{f"frame{n}.png": encode(a) for n, a in arrays.items()})
    sample = decode_sample("video", raw, max_images=5)
    assert isinstance(sample, VideoSample) and sample.text == "a moving star"
    assert len(sample.frames) == 3
    for frame, n in zip(sample.frames, (0, 2, 10), strict=True):
        np.testing.assert_array_equal(np.asarray(frame), arrays[n])


@pytest.mark.parametrize("files", [{"txt": b"a pink heart. this is a stet.\n"},
                                   {"json": b'{"text": "a pink heart. this is a stet."}'}])
def test_text_document_from_txt_or_json(files: dict[str, bytes]) -> None:
    sample = decode_sample("text", _pair(**files), max_images=5)
    assert isinstance(sample, TextSample) and sample.key == "k0"
    assert sample.text == "a pink heart. this is a stet."


def test_max_images_none_means_no_limit() -> None:
    infos = [{"image_name": f"img{i}.png", "matched_text_index": 0} for i in range(8)]
    raw = _doc(["t"], infos, **{f"img{i}.png": encode(image_array(i)) for i in range(8)})
    assert len(decode_sample("interleaved", raw, max_images=None).images) == 8


# ---------------------------------------------------------------------- corrupt samples


def _truncated_jpeg() -> bytes:
    data = encode(image_array(5, (64, 64)), "JPEG")
    return data[: len(data) // 2]


GOOD_PNG = encode(image_array(6))
ONE_IMAGE = [{"image_name": "img0.png", "matched_text_index": 0}]

CORRUPT = {
    "pairs truncated jpeg": ("pairs", _pair(jpg=_truncated_jpeg(), txt=b"x"), "bad_image"),
    "pairs not an image": ("pairs", _pair(png=b"hello, world", txt=b"x"), "bad_image"),
    "pairs empty image file": ("pairs", _pair(png=b"", txt=b"x"), "bad_image"),
    "pairs no image": ("pairs", _pair(txt=b"x"), "missing_image"),
    "pairs no caption": ("pairs", _pair(png=GOOD_PNG), "missing_text"),
    "pairs json without caption": ("pairs", _pair(png=GOOD_PNG, json=b'{"url": "u"}'), "missing_text"),
    "pairs bad json": ("pairs", _pair(png=GOOD_PNG, json=b'{"caption": '), "bad_json"),
    "pairs caption not a string": ("pairs", _pair(png=GOOD_PNG, json=b'{"caption": 3}'), "bad_json"),
    "pairs empty caption": ("pairs", _pair(png=GOOD_PNG, txt=b"  \n "), "empty_text"),
    "pairs non-utf8 caption": ("pairs", _pair(png=GOOD_PNG, txt=b"\xff\xfe\xfa"), "bad_text"),
    "interleaved bad json": ("interleaved", _pair(json=b"{not json", **{"img0.png": GOOD_PNG}), "bad_json"),
    "interleaved json list": ("interleaved", _pair(json=b"[1, 2]"), "bad_json"),
    "interleaved no json": ("interleaved", _pair(**{"img0.png": GOOD_PNG}), "bad_json"),
    "interleaved text_list not strings": ("interleaved", _doc([1, 2], ONE_IMAGE, **{"img0.png": GOOD_PNG}),
                                          "bad_json"),
    "interleaved index out of range": (
        "interleaved", _doc(["a"], [{"image_name": "img0.png", "matched_text_index": 1}], **{"img0.png": GOOD_PNG}),
        "bad_json"),
    "interleaved image_name missing from sample": ("interleaved", _doc(["a"], ONE_IMAGE, **{"img1.png": GOOD_PNG}),
                                                   "missing_image"),
    "interleaved truncated image": ("interleaved", _doc(["a"], ONE_IMAGE, **{"img0.png": _truncated_jpeg()}),
                                    "bad_image"),
    "interleaved too many images": (
        "interleaved",
        _doc(["a"], [{"image_name": f"img{i}.png", "matched_text_index": 0} for i in range(3)],
             **{f"img{i}.png": GOOD_PNG for i in range(3)}),
        "too_many_images"),
    "interleaved empty text": ("interleaved", _doc(["", "  "], ONE_IMAGE, **{"img0.png": GOOD_PNG}), "empty_text"),
    "interleaved no images": ("interleaved", _doc(["a"], []), "no_images"),
    "video no frames": ("video", _pair(txt=b"x", png=GOOD_PNG), "no_frames"),
    "video duplicate frame numbers": ("video", _pair(txt=b"x", **{"frame1.png": GOOD_PNG, "frame001.png": GOOD_PNG}),
                                      "bad_frames"),
    "video truncated frame": ("video", _pair(txt=b"x", **{"frame000.jpg": _truncated_jpeg()}), "bad_image"),
    "video empty caption": ("video", _pair(txt=b"", **{"frame000.png": GOOD_PNG}), "empty_text"),
    "text blank": ("text", _pair(txt=b" \n"), "empty_text"),
    "text no file": ("text", _pair(png=GOOD_PNG), "missing_text"),
    "text json without text": ("text", _pair(json=b'{"url": "u"}'), "missing_text"),
    "text not utf8": ("text", _pair(txt=b"\xff\xfe"), "bad_text"),
}


@pytest.mark.parametrize("name", list(CORRUPT))
def test_corrupt_sample_reason(name: str) -> None:
    kind, raw, reason = CORRUPT[name]
    with pytest.raises(CorruptSample) as caught:
        decode_sample(kind, raw, max_images=2)
    assert caught.value.reason == reason, caught.value
    assert caught.value.reason in REASONS
    assert caught.value.key == "k0" and caught.value.detail


def test_bad_image_detail_carries_pils_reason() -> None:
    with pytest.raises(CorruptSample) as caught:
        decode_sample("pairs", _pair(jpg=_truncated_jpeg(), txt=b"x"), max_images=5)
    assert "truncated" in caught.value.detail.lower()


def test_corrupt_sample_survives_pickling_between_worker_processes() -> None:
    error = CorruptSample("bad_json", "does not parse", key="k9")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.reason, copy.detail, copy.key) == ("bad_json", "does not parse", "k9")
    assert str(copy) == str(error)


def test_unknown_kind_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="kind"):
        decode_sample("audio", _pair(txt=b"x"), max_images=5)


def test_decoded_images_are_plain_loaded_rgb_images() -> None:
    gray = encode(np.arange(16, dtype=np.uint8).reshape(4, 4))
    image = decode_sample("pairs", _pair(png=gray, txt=b"g"), max_images=5).image
    assert isinstance(image, Image.Image) and image.mode == "RGB" and image.size == (4, 4)
