"""Tests for flamingo_vlm.processing.images: invariants of loading, resizing, normalising and serialising."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from flamingo_vlm.processing import images
from flamingo_vlm.processing.images import (
    CLIP_IMAGE_MEAN,
    CLIP_IMAGE_STD,
    IMAGE_PROCESSOR_FILENAME,
    ImageProcessor,
)

SIZE = 32
MEAN_RGB = tuple(round(value * 255) for value in CLIP_IMAGE_MEAN)  # (123, 117, 104)
# One 8-bit step of the mean colour's rounding, divided by the smallest std, bounds how far it lands from zero.
MEAN_ATOL = 1.0 / 255 / min(CLIP_IMAGE_STD)
RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


@pytest.fixture
def processor() -> ImageProcessor:
    return ImageProcessor(image_size=SIZE)


def normalised(rgb: tuple[int, int, int], processor: ImageProcessor | None = None) -> torch.Tensor:
    """The (3, 1, 1) normalised value of an 8-bit RGB colour, to broadcast against processor output."""
    processor = processor or ImageProcessor(image_size=SIZE)
    mean = torch.tensor(processor.image_mean).view(3, 1, 1)
    std = torch.tensor(processor.image_std).view(3, 1, 1)
    return (torch.tensor(rgb, dtype=torch.float32).view(3, 1, 1) / 255 - mean) / std


def unnormalised(pixels: torch.Tensor, processor: ImageProcessor) -> torch.Tensor:
    """Invert the normalisation back to the [0, 255] scale."""
    mean = torch.tensor(processor.image_mean).view(3, 1, 1)
    std = torch.tensor(processor.image_std).view(3, 1, 1)
    return (pixels * std + mean) * 255


def solid(rgb: tuple[int, int, int], width: int = 40, height: int = 24) -> Image.Image:
    return Image.new("RGB", (width, height), rgb)


def thirds(colors: tuple, width: int, height: int, horizontal: bool = True) -> Image.Image:
    """An image split into three equal bands (left/centre/right, or top/middle/bottom)."""
    array = np.zeros((height, width, 3), dtype=np.uint8)
    for index, color in enumerate(colors):
        if horizontal:
            array[:, index * width // 3 : (index + 1) * width // 3] = color
        else:
            array[index * height // 3 : (index + 1) * height // 3] = color
    return Image.fromarray(array)


def gradient(width: int = 40, height: int = 24) -> np.ndarray:
    """A uint8 (H, W) ramp, so resampling and channel mix-ups change values."""
    return np.tile(np.linspace(0, 255, width).round().astype(np.uint8), (height, 1))


def _pil_modes() -> dict[str, Callable[[], Image.Image]]:
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 256, (24, 40, 3), dtype=np.uint8))

    def palette_with_transparency() -> Image.Image:
        image = rgb.convert("P")
        image.info["transparency"] = 0
        return image

    return {
        "RGB": lambda: rgb,
        "RGBA": lambda: rgb.convert("RGBA"),
        "RGBa": lambda: rgb.convert("RGBA").convert("RGBa"),
        "RGBX": lambda: rgb.convert("RGBX"),
        "L": lambda: rgb.convert("L"),
        "LA": lambda: rgb.convert("LA"),
        "La": lambda: rgb.convert("LA").convert("La"),
        "P": lambda: rgb.convert("P"),
        "P+transparency": palette_with_transparency,
        "PA": lambda: rgb.convert("PA"),
        "I;16": lambda: Image.fromarray(gradient().astype(np.uint16) * 257),
        "I": lambda: rgb.convert("I"),
        "F": lambda: rgb.convert("F"),
        "CMYK": lambda: rgb.convert("CMYK"),
        "1": lambda: rgb.convert("1"),
        "YCbCr": lambda: rgb.convert("YCbCr"),
        "HSV": lambda: rgb.convert("HSV"),
        "LAB": lambda: rgb.convert("LAB"),
    }


PIL_MODES = _pil_modes()

ARRAYS: dict[str, Callable[[], np.ndarray]] = {
    "uint8 (H,W)": lambda: gradient(),
    "uint8 (H,W,1)": lambda: gradient()[..., None],
    "uint8 (H,W,3)": lambda: np.stack([gradient()] * 3, axis=-1),
    "uint8 (H,W,4)": lambda: np.dstack([gradient()] * 3 + [np.full((24, 40), 200, np.uint8)]),
    "float32 (H,W,3)": lambda: np.full((24, 40, 3), 0.25, dtype=np.float32),
    "float64 (H,W)": lambda: gradient().astype(np.float64) / 255,
    "float16 (H,W,4)": lambda: np.full((24, 40, 4), 0.5, dtype=np.float16),
    "bool (H,W)": lambda: gradient() > 127,
    "non-contiguous (H,W,3)": lambda: np.stack([gradient()] * 3, axis=-1)[:, ::-1],
    "(3,H,3) read as H=3, W=H, C=3": lambda: np.zeros((3, 24, 3), dtype=np.uint8),
}


# ---------------------------------------------------------------------- shapes and dtypes


@pytest.mark.parametrize("resize_mode", ["center_crop", "pad_to_square", "stretch"])
@pytest.mark.parametrize("mode", list(PIL_MODES))
def test_every_pil_mode_gives_a_normalised_square(mode: str, resize_mode: str) -> None:
    processor = ImageProcessor(image_size=SIZE, resize_mode=resize_mode)
    source = PIL_MODES[mode]()
    loaded = processor.load_image(source)
    assert loaded.mode == "RGB" and loaded.size == source.size
    pixels = processor(source)
    assert pixels.shape == (3, SIZE, SIZE) and pixels.dtype == torch.float32
    assert torch.isfinite(pixels).all()


@pytest.mark.parametrize("resize_mode", ["center_crop", "pad_to_square", "stretch"])
@pytest.mark.parametrize("kind", list(ARRAYS))
def test_every_array_kind_gives_a_normalised_square(kind: str, resize_mode: str) -> None:
    processor = ImageProcessor(image_size=SIZE, resize_mode=resize_mode)
    array = ARRAYS[kind]()
    loaded = processor.load_image(array)
    assert loaded.mode == "RGB" and loaded.size == (array.shape[1], array.shape[0])
    pixels = processor(array)
    assert pixels.shape == (3, SIZE, SIZE) and pixels.dtype == torch.float32


@pytest.mark.parametrize("resample", ["nearest", "bilinear", "bicubic", "lanczos"])
@pytest.mark.parametrize("as_path", [str, Path], ids=["str", "pathlib"])
@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp", ".gif", ".webp", ".tiff"])
def test_image_files_load_from_str_and_pathlib(tmp_path: Path, suffix: str, as_path: type, resample: str) -> None:
    path = tmp_path / f"picture{suffix}"
    solid(RED, 50, 30).save(path)
    processor = ImageProcessor(image_size=SIZE, resample=resample)
    pixels = processor(as_path(path))
    assert pixels.shape == (3, SIZE, SIZE) and pixels.dtype == torch.float32
    # Lossy formats (JPEG, WebP, GIF palettes) shift the colour a little, never to another colour.
    torch.testing.assert_close(pixels, normalised(RED).expand_as(pixels), atol=0.15, rtol=0)


def test_sixteen_bit_png_file_is_scaled_not_clipped(tmp_path: Path, processor: ImageProcessor) -> None:
    path = tmp_path / "deep.png"
    Image.fromarray(np.full((10, 10), 128 * 257, dtype=np.uint16)).save(path)
    assert np.asarray(processor.load_image(path)).max() == 128


def test_exif_orientation_is_applied(tmp_path: Path, processor: ImageProcessor) -> None:
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    solid(RED, width=40, height=20).save(path, exif=exif)
    assert processor.load_image(path).size == (20, 40)
    with Image.open(path) as opened:
        assert processor.load_image(opened).size == (20, 40)


def test_load_image_does_not_modify_its_input(processor: ImageProcessor) -> None:
    image = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    array = np.zeros((8, 8, 4), dtype=np.uint8)
    processor.load_image(image)
    processor.load_image(array)
    assert image.mode == "RGBA" and image.getpixel((0, 0)) == (255, 0, 0, 0)
    assert not array.any()


# ---------------------------------------------------------------------- normalisation


@pytest.mark.parametrize("resample", ["nearest", "bilinear", "bicubic", "lanczos"])
@pytest.mark.parametrize("resize_mode", ["center_crop", "pad_to_square", "stretch"])
def test_mean_colour_normalises_to_zero(resize_mode: str, resample: str) -> None:
    processor = ImageProcessor(image_size=SIZE, resize_mode=resize_mode, resample=resample)
    pixels = processor(solid(MEAN_RGB, 57, 31))
    torch.testing.assert_close(pixels, torch.zeros_like(pixels), atol=MEAN_ATOL, rtol=0)


def test_custom_statistics_mean_colour_normalises_to_zero() -> None:
    processor = ImageProcessor(image_size=SIZE, image_mean=(0.2, 0.5, 0.9), image_std=(0.1, 0.2, 0.3))
    pixels = processor(solid((51, 128, 230)))
    torch.testing.assert_close(pixels, torch.zeros_like(pixels), atol=1 / 255 / 0.1, rtol=0)


def test_normalisation_is_per_channel_and_channels_first(processor: ImageProcessor) -> None:
    color = (200, 10, 50)
    pixels = processor(solid(color))
    expected = torch.tensor([(c / 255 - m) / s for c, m, s in zip(color, CLIP_IMAGE_MEAN, CLIP_IMAGE_STD, strict=True)])
    torch.testing.assert_close(pixels, expected.view(3, 1, 1).expand_as(pixels), atol=1e-5, rtol=0)


def test_every_pixel_is_normalised_in_place_at_the_target_size(processor: ImageProcessor) -> None:
    # A square image of the target size is not resampled: each output value is its own pixel's, channels first.
    array = np.random.default_rng(0).integers(0, 256, size=(SIZE, SIZE, 3), dtype=np.uint8)
    pixels = processor(Image.fromarray(array))
    assert pixels.shape == (3, SIZE, SIZE) and pixels.dtype == torch.float32 and pixels.is_contiguous()
    mean = torch.tensor(CLIP_IMAGE_MEAN).view(3, 1, 1)
    std = torch.tensor(CLIP_IMAGE_STD).view(3, 1, 1)
    expected = (torch.from_numpy(array).permute(2, 0, 1).double() / 255 - mean.double()) / std.double()
    torch.testing.assert_close(pixels.double(), expected, atol=1e-5, rtol=0)


def test_output_owns_its_memory_and_leaves_the_image_alone(processor: ImageProcessor) -> None:
    image = solid(RED, SIZE, SIZE)
    pixels = processor(image)
    pixels.zero_()  # writable, and not a view of the image's buffer
    assert image.getpixel((0, 0)) == RED
    torch.testing.assert_close(processor(image), normalised(RED).expand(3, SIZE, SIZE))


def test_exif_orientation_of_an_in_memory_rgb_image_is_applied(tmp_path: Path) -> None:
    # An RGB image normally skips load_image's conversion; one that EXIF says to rotate must not.
    processor = ImageProcessor(image_size=SIZE, resize_mode="stretch", resample="nearest")
    path = tmp_path / "rotated.png"
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    thirds((RED, GREEN, BLUE), SIZE, SIZE, horizontal=True).save(path, exif=exif)
    with Image.open(path) as opened:
        opened.load()
        assert opened.mode == "RGB"
        pixels = processor(opened)
    # Left-to-right bands, turned clockwise, run top to bottom.
    for row, color in ((0, RED), (SIZE // 2, GREEN), (SIZE - 1, BLUE)):
        torch.testing.assert_close(pixels[:, row, SIZE // 2], normalised(color).view(3), atol=1e-5, rtol=0)


@pytest.mark.parametrize("shape", [(200, 300), (300, 200), (101, 77), (77, 101), (33, 500), (7, 9)])
def test_center_crop_matches_hugging_face_clip_processor(shape: tuple[int, int]) -> None:
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (*shape, 3), dtype=np.uint8))
    reference = CLIPImageProcessorPil(size={"shortest_edge": SIZE}, crop_size={"height": SIZE, "width": SIZE})
    expected = torch.from_numpy(reference(image, return_tensors="np")["pixel_values"][0])
    torch.testing.assert_close(ImageProcessor(image_size=SIZE)(image), expected, atol=1e-5, rtol=0)


# ---------------------------------------------------------------------- resize modes


@pytest.mark.parametrize("horizontal", [True, False], ids=["wide", "tall"])
@pytest.mark.parametrize("resample", ["nearest", "bicubic"])
def test_center_crop_keeps_the_centre_colour(horizontal: bool, resample: str) -> None:
    width, height = (300, 100) if horizontal else (100, 300)
    processor = ImageProcessor(image_size=SIZE, resample=resample)
    pixels = processor(thirds((RED, GREEN, BLUE), width, height, horizontal))
    # The filter may blend a pixel or two at the crop's edges with the neighbouring bands.
    interior = pixels[:, 2:-2, 2:-2]
    torch.testing.assert_close(interior, normalised(GREEN).expand_as(interior), atol=1e-5, rtol=0)


def test_stretch_keeps_every_band() -> None:
    processor = ImageProcessor(image_size=SIZE, resize_mode="stretch", resample="nearest")
    pixels = processor(thirds((RED, GREEN, BLUE), 300, 100))
    for column, color in ((0, RED), (SIZE // 2, GREEN), (SIZE - 1, BLUE)):
        expected = normalised(color).view(3, 1).expand(3, SIZE)
        torch.testing.assert_close(pixels[:, :, column], expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("horizontal", [True, False], ids=["wide", "tall"])
def test_pad_to_square_pads_with_the_mean_colour_and_keeps_aspect(horizontal: bool) -> None:
    width, height = (96, 32) if horizontal else (32, 96)
    processor = ImageProcessor(image_size=SIZE, resize_mode="pad_to_square", resample="nearest")
    pixels = processor(solid(RED, width, height))
    # Work in rows: transpose the tall case so the content band always spans the middle rows.
    rows = pixels if horizontal else pixels.transpose(1, 2)
    is_content = torch.isclose(rows, normalised(RED), atol=1e-5).all(dim=0).all(dim=1)
    is_padding = (rows.abs() <= MEAN_ATOL).all(dim=0).all(dim=1)
    assert bool((is_content | is_padding).all())
    # The 3:1 content keeps its aspect: a third of the square, centred.
    assert int(is_content.sum()) == SIZE * 32 // 96
    content_rows = torch.nonzero(is_content).flatten()
    assert int(content_rows[0]) == int(SIZE - content_rows[-1] - 1)


def test_pad_to_square_uses_the_configured_mean_colour() -> None:
    processor = ImageProcessor(
        image_size=SIZE, image_mean=(0.5, 0.5, 0.5), image_std=(0.5, 0.5, 0.5), resize_mode="pad_to_square"
    )
    pixels = processor(solid(WHITE, 96, 32))
    torch.testing.assert_close(pixels[:, 0], torch.full((3, SIZE), 128 / 255 * 2 - 1), atol=1e-5, rtol=0)


# ---------------------------------------------------------------------- transparency and grayscale


def _half_transparent_inputs() -> dict[str, Callable[[], object]]:
    """Inputs whose left half is opaque white and right half fully transparent (hiding red, to catch leaks)."""
    rgba = np.zeros((20, 40, 4), dtype=np.uint8)
    rgba[:, :20] = (*WHITE, 255)
    rgba[:, 20:] = (*RED, 0)
    la = np.zeros((20, 40, 2), dtype=np.uint8)
    la[:, :20] = (255, 255)

    def palette() -> Image.Image:
        image = Image.fromarray(rgba[..., :3]).convert("P")
        image.info["transparency"] = image.getpixel((39, 0))
        return image

    return {
        "PIL RGBA": lambda: Image.fromarray(rgba),
        "PIL LA": lambda: Image.fromarray(la, mode="LA"),
        "PIL P+transparency": palette,
        "PIL PA": lambda: Image.fromarray(rgba).convert("PA"),
        "uint8 (H,W,4)": lambda: rgba,
        "float (H,W,4)": lambda: rgba.astype(np.float32) / 255,
    }


HALF_TRANSPARENT = _half_transparent_inputs()


@pytest.mark.parametrize("kind", list(HALF_TRANSPARENT))
def test_transparency_composites_onto_the_mean_colour(kind: str) -> None:
    processor = ImageProcessor(image_size=SIZE, resize_mode="stretch", resample="nearest")
    pixels = processor(HALF_TRANSPARENT[kind]())
    opaque, transparent = pixels[:, :, : SIZE // 2], pixels[:, :, SIZE // 2 :]
    torch.testing.assert_close(opaque, normalised(WHITE).expand_as(opaque), atol=1e-5, rtol=0)
    torch.testing.assert_close(transparent, torch.zeros_like(transparent), atol=MEAN_ATOL, rtol=0)


def test_partial_transparency_blends_with_the_mean_colour(processor: ImageProcessor) -> None:
    loaded = np.asarray(processor.load_image(Image.new("RGBA", (4, 4), (*WHITE, 128))))
    expected = np.array([255 * 128 / 255 + m * 127 / 255 for m in MEAN_RGB])
    np.testing.assert_allclose(loaded[0, 0], expected, atol=1)


GRAYSCALE: dict[str, Callable[[], object]] = {
    "PIL L": lambda: Image.fromarray(gradient()),
    "PIL LA": lambda: Image.fromarray(gradient()).convert("LA"),
    "PIL 1": lambda: Image.fromarray(gradient()).convert("1"),
    "PIL I;16": lambda: Image.fromarray(gradient().astype(np.uint16) * 257),
    "PIL I": lambda: Image.fromarray(gradient()).convert("I"),
    "PIL F": lambda: Image.fromarray(gradient()).convert("F"),
    "uint8 (H,W)": gradient,
    "uint8 (H,W,1)": lambda: gradient()[..., None],
    "float (H,W)": lambda: gradient() / 255.0,
    "bool (H,W)": lambda: gradient() > 100,
}


@pytest.mark.parametrize("kind", list(GRAYSCALE))
def test_grayscale_gives_three_equal_channels(kind: str, processor: ImageProcessor) -> None:
    loaded = np.asarray(processor.load_image(GRAYSCALE[kind]()))
    assert (loaded[..., 0] == loaded[..., 1]).all() and (loaded[..., 1] == loaded[..., 2]).all()
    assert loaded.min() < loaded.max()  # the ramp survived, so equal channels are not trivially constant
    channels = unnormalised(processor(GRAYSCALE[kind]()), processor)
    torch.testing.assert_close(channels[0], channels[1], atol=1e-3, rtol=0)
    torch.testing.assert_close(channels[1], channels[2], atol=1e-3, rtol=0)


@pytest.mark.parametrize(
    "image",
    [
        Image.fromarray(np.full((4, 4), 1000, dtype=np.uint16)),  # I;16: PIL's convert would clip to 255
        Image.fromarray(np.full((4, 4), 1000, dtype=np.int32)),  # I holding 16-bit data
        Image.fromarray(np.full((4, 4), 1000 / 65535, dtype=np.float32)),  # F on [0, 1]
    ],
    ids=["I;16", "I 16-bit", "F [0,1]"],
)
def test_high_bit_depth_modes_are_rescaled_to_eight_bits(image: Image.Image, processor: ImageProcessor) -> None:
    assert np.asarray(processor.load_image(image))[0, 0].tolist() == [4, 4, 4]  # 1000 / 65535 * 255 rounds to 4


def test_eight_bit_data_in_wider_modes_keeps_its_values(processor: ImageProcessor) -> None:
    reference = np.asarray(processor.load_image(gradient()))
    for mode in ("I", "F"):
        widened = Image.fromarray(gradient()).convert(mode)
        np.testing.assert_array_equal(np.asarray(processor.load_image(widened)), reference)


def test_float_and_bool_arrays_are_scaled_to_eight_bits(processor: ImageProcessor) -> None:
    assert np.asarray(processor.load_image(np.full((2, 2, 3), 0.5)))[0, 0].tolist() == [128] * 3
    assert np.asarray(processor.load_image(np.ones((2, 2), dtype=bool)))[0, 0].tolist() == [255] * 3


# ---------------------------------------------------------------------- video


def test_video_frames_keep_their_order(processor: ImageProcessor) -> None:
    colors = [RED, GREEN, BLUE, WHITE, MEAN_RGB]
    frames = [solid(color, 40 + 10 * index, 30) for index, color in enumerate(colors)]  # sizes may differ
    for video in (frames, tuple(frames)):
        pixels = processor.preprocess_media(video)
        assert pixels.shape == (len(colors), 3, SIZE, SIZE) and pixels.dtype == torch.float32
        for frame, color in zip(pixels, colors, strict=True):
            torch.testing.assert_close(frame, normalised(color).expand_as(frame), atol=1e-5, rtol=0)


def test_video_as_four_dimensional_array(processor: ImageProcessor) -> None:
    colors = [RED, GREEN, BLUE]
    video = np.stack([np.asarray(solid(color, 40, 30)) for color in colors])
    pixels = processor.preprocess_media(video)
    assert pixels.shape == (3, 3, SIZE, SIZE)
    for index, color in enumerate(colors):
        torch.testing.assert_close(pixels[index], normalised(color).expand(3, SIZE, SIZE), atol=1e-5, rtol=0)


def test_video_of_mixed_frame_kinds(tmp_path: Path, processor: ImageProcessor) -> None:
    path = tmp_path / "frame.png"
    solid(BLUE).save(path)
    frames = [solid(RED), np.asarray(solid(GREEN)), path, str(path)]
    pixels = processor.preprocess_media(frames)
    assert pixels.shape == (4, 3, SIZE, SIZE)
    torch.testing.assert_close(pixels[1], normalised(GREEN).expand(3, SIZE, SIZE), atol=1e-5, rtol=0)
    torch.testing.assert_close(pixels[2], pixels[3])


@pytest.mark.parametrize(
    "image",
    [solid(RED), np.asarray(solid(RED)), np.asarray(solid(RED))[..., 0]],
    ids=["PIL", "(H,W,3)", "(H,W)"],
)
def test_single_image_media_is_one_frame(image: object, processor: ImageProcessor) -> None:
    pixels = processor.preprocess_media(image)
    assert pixels.shape == (1, 3, SIZE, SIZE)
    torch.testing.assert_close(pixels[0], processor(image))


def test_single_image_path_media_is_one_frame(tmp_path: Path, processor: ImageProcessor) -> None:
    path = tmp_path / "one.png"
    solid(RED).save(path)
    assert processor.preprocess_media(path).shape == (1, 3, SIZE, SIZE)
    assert processor.preprocess_media(str(path)).shape == (1, 3, SIZE, SIZE)


# ---------------------------------------------------------------------- errors


def test_missing_file_names_the_path(tmp_path: Path, processor: ImageProcessor) -> None:
    path = tmp_path / "nowhere.png"
    for argument in (path, str(path)):
        with pytest.raises(ValueError, match=f"not found: {re.escape(str(path))}"):
            processor.load_image(argument)


def test_url_is_not_fetched(processor: ImageProcessor) -> None:
    with pytest.raises(ValueError, match=re.escape("https://example.com/cat.png (URLs are not downloaded")):
        processor.load_image("https://example.com/cat.png")


def test_directory_is_not_an_image(tmp_path: Path, processor: ImageProcessor) -> None:
    with pytest.raises(ValueError, match=f"not a file: {re.escape(str(tmp_path))}"):
        processor.load_image(tmp_path)


def test_undecodable_file_names_the_path_and_pil_reason(tmp_path: Path, processor: ImageProcessor) -> None:
    path = tmp_path / "fake.png"
    path.write_bytes(b"this is not an image")
    with pytest.raises(ValueError, match=f"cannot decode {re.escape(str(path))}.*cannot identify image file"):
        processor.load_image(path)


def test_truncated_file_names_the_path(tmp_path: Path, processor: ImageProcessor) -> None:
    whole = tmp_path / "whole.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(whole)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(whole.read_bytes()[:-2000])
    with pytest.raises(ValueError, match=f"cannot decode {re.escape(str(truncated))} as an image: .+"):
        processor.load_image(truncated)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((3, 10, 12), np.uint8), r"shape \(3, 10, 12\).*channels-first.*transpose\(1, 2, 0\)"),
        (np.zeros((10, 12, 2), np.uint8), r"\(H, W\) or \(H, W, C\).*shape \(10, 12, 2\)"),
        (np.zeros(12, np.uint8), r"1-D array of shape \(12,\)"),
        (np.zeros((2, 10, 12, 3), np.uint8), r"4-D array.*preprocess_media"),
        (np.zeros((0, 5, 3), np.uint8), r"empty: shape \(0, 5, 3\)"),
        (np.zeros((4, 4), np.uint16), r"dtype uint16.*257"),
        (np.zeros((4, 4), np.int64), r"dtype int64.*astype\(np.uint8\)"),
        (np.zeros((4, 4), np.complex64), r"dtype complex64"),
        (np.full((4, 4), None, dtype=object), r"dtype object"),
        (np.full((4, 4, 3), 255.0), r"\[0, 1\].*range \[255, 255\]"),
        (np.full((4, 4), -0.5), r"\[0, 1\].*range \[-0.5, -0.5\]"),
        (np.full((4, 4), np.nan, dtype=np.float32), r"NaN"),
    ],
    ids=[
        "CHW",
        "2 channels",
        "1-D",
        "4-D",
        "empty",
        "uint16",
        "int64",
        "complex",
        "object",
        "float>1",
        "float<0",
        "nan",
    ],
)
def test_bad_arrays_explain_the_problem(array: np.ndarray, message: str, processor: ImageProcessor) -> None:
    with pytest.raises(ValueError, match=message):
        processor.load_image(array)


@pytest.mark.parametrize(
    "image",
    [
        Image.fromarray(np.full((4, 4), -5, dtype=np.int32)),
        Image.fromarray(np.full((4, 4), 2.0**20, dtype=np.float32)),
        Image.fromarray(np.full((4, 4), np.inf, dtype=np.float32)),
    ],
    ids=["I negative", "F huge", "F inf"],
)
def test_unrepresentable_wide_mode_values_are_rejected(image: Image.Image, processor: ImageProcessor) -> None:
    with pytest.raises(ValueError, match=f"mode '{image.mode}' image"):
        processor.load_image(image)


@pytest.mark.parametrize(
    ("value", "type_name"),
    [(42, "int"), (None, "NoneType"), (b"\x89PNG", "bytes"), ({"image": 1}, "dict"), (torch.zeros(3, 4, 4), "Tensor")],
)
def test_non_image_objects_name_their_type(value: object, type_name: str, processor: ImageProcessor) -> None:
    with pytest.raises(ValueError, match=rf"type \S*{type_name}\b"):
        processor(value)


def test_tensor_input_suggests_a_conversion(processor: ImageProcessor) -> None:
    with pytest.raises(ValueError, match=re.escape("permute(1, 2, 0).numpy()")):
        processor.load_image(torch.zeros(3, 4, 4))


@pytest.mark.parametrize("video", [[], (), np.zeros((0, 8, 8, 3), np.uint8)], ids=["list", "tuple", "array"])
def test_empty_video_is_rejected(video: object, processor: ImageProcessor) -> None:
    with pytest.raises(ValueError, match=r"empty video.*0"):
        processor.preprocess_media(video)


def test_bad_video_frame_is_named(tmp_path: Path, processor: ImageProcessor) -> None:
    missing = tmp_path / "gone.png"
    with pytest.raises(ValueError, match=f"video frame 2: .*{re.escape(str(missing))}"):
        processor.preprocess_media([solid(RED), solid(GREEN), missing])
    with pytest.raises(ValueError, match=r"video frame 1: .*type .*int"):
        processor.preprocess_media([solid(RED), 7])


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"image_size": 0}, "image_size must be a positive int"),
        ({"image_size": 224.0}, "image_size must be a positive int"),
        ({"image_size": True}, "image_size must be a positive int"),
        ({"image_mean": (0.5, 0.5)}, "image_mean must be a sequence of 3 numbers"),
        ({"image_mean": "abc"}, "image_mean must be a sequence of 3 numbers"),
        ({"image_mean": (0.5, 0.5, 2.0)}, r"image_mean must lie in \[0, 1\]"),
        ({"image_std": (0.5, 0.0, 0.5)}, "image_std must be positive"),
        ({"image_std": (0.5, float("nan"), 0.5)}, "image_std must be finite"),
        ({"resize_mode": "crop"}, "resize_mode must be one of .*pad_to_square.*'crop'"),
        ({"resample": "box"}, "resample must be one of .*lanczos.*'box'"),
    ],
)
def test_invalid_settings_are_rejected(settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ImageProcessor(**settings)


# ---------------------------------------------------------------------- serialisation

CUSTOM = ImageProcessor(
    image_size=48,
    image_mean=(0.1, 0.2, 0.3),
    image_std=(0.4, 0.5, 0.6),
    resize_mode="pad_to_square",
    resample="lanczos",
)


def test_to_dict_from_dict_round_trip() -> None:
    settings = CUSTOM.to_dict()
    assert settings == json.loads(json.dumps(settings))  # plain JSON types only
    assert ImageProcessor.from_dict(settings) == CUSTOM
    assert ImageProcessor.from_dict(json.loads(json.dumps(settings))) == CUSTOM


def test_statistics_accept_numpy_values() -> None:
    processor = ImageProcessor(image_mean=np.array([0.5, 0.5, 0.5]), image_std=[np.float32(0.25)] * 3)
    assert processor.image_mean == (0.5, 0.5, 0.5) and processor.image_std == (0.25, 0.25, 0.25)
    assert all(type(value) is float for value in processor.image_mean + processor.image_std)  # JSON-serialisable


def test_from_dict_fills_defaults() -> None:
    assert ImageProcessor.from_dict({"image_size": 64}) == ImageProcessor(image_size=64)


def test_from_dict_names_unknown_keys() -> None:
    with pytest.raises(ValueError, match=r"unknown image processor settings \['crop_pct', 'size'\]"):
        ImageProcessor.from_dict({**CUSTOM.to_dict(), "size": 3, "crop_pct": 0.9})


def test_from_dict_rejects_non_mappings() -> None:
    with pytest.raises(ValueError, match="got list"):
        ImageProcessor.from_dict([("image_size", 3)])  # type: ignore[arg-type]


def test_save_and_from_pretrained_round_trip(tmp_path: Path) -> None:
    directory = tmp_path / "nested" / "processor"
    CUSTOM.save_pretrained(directory)
    assert sorted(p.name for p in directory.iterdir()) == [IMAGE_PROCESSOR_FILENAME]  # no temporary files left
    assert ImageProcessor.from_pretrained(directory) == CUSTOM
    assert ImageProcessor.from_pretrained(str(directory)) == CUSTOM
    ImageProcessor(image_size=16).save_pretrained(directory)  # overwriting replaces the settings
    assert ImageProcessor.from_pretrained(directory) == ImageProcessor(image_size=16)


def test_failed_save_keeps_the_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    CUSTOM.save_pretrained(tmp_path)
    before = (tmp_path / IMAGE_PROCESSOR_FILENAME).read_bytes()
    monkeypatch.setattr(ImageProcessor, "to_dict", lambda self: {"image_size": object()})
    with pytest.raises(TypeError):
        ImageProcessor().save_pretrained(tmp_path)
    assert (tmp_path / IMAGE_PROCESSOR_FILENAME).read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [IMAGE_PROCESSOR_FILENAME]


def test_from_pretrained_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=f"{re.escape(str(tmp_path / IMAGE_PROCESSOR_FILENAME))}.*save_pretrained"):
        ImageProcessor.from_pretrained(tmp_path)


@pytest.mark.parametrize(
    ("content", "message"),
    [("{not json", "cannot read .* as JSON"), ("[1, 2]", "must hold a JSON object"), ('{"bogus": 1}', "bogus")],
)
def test_from_pretrained_bad_file_names_the_path(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / IMAGE_PROCESSOR_FILENAME
    path.write_text(content)
    with pytest.raises(ValueError, match=f"{re.escape(str(path))}.*{message}"):
        ImageProcessor.from_pretrained(tmp_path)


# ---------------------------------------------------------------------- from_vision_folder

TINY_VISION = dict(
    image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
)


def test_from_clip_vision_config(tmp_path: Path) -> None:
    from transformers import CLIPVisionConfig

    CLIPVisionConfig(**TINY_VISION).save_pretrained(tmp_path)
    processor = ImageProcessor.from_vision_folder(tmp_path)
    assert processor == ImageProcessor(image_size=32, image_mean=CLIP_IMAGE_MEAN, image_std=CLIP_IMAGE_STD)
    assert processor(solid(RED)).shape == (3, 32, 32)


def test_from_full_clip_config_reads_the_vision_section(tmp_path: Path) -> None:
    from transformers import CLIPConfig

    text = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    CLIPConfig(vision_config={**TINY_VISION, "image_size": 40}, text_config=text).save_pretrained(tmp_path)
    processor = ImageProcessor.from_vision_folder(tmp_path)
    assert processor.image_size == 40 and processor.image_mean == CLIP_IMAGE_MEAN


def test_from_siglip_vision_config(tmp_path: Path) -> None:
    from transformers import SiglipVisionConfig

    SiglipVisionConfig(**TINY_VISION).save_pretrained(tmp_path)
    processor = ImageProcessor.from_vision_folder(tmp_path, resize_mode="stretch")
    assert processor == ImageProcessor(
        image_size=32, image_mean=(0.5, 0.5, 0.5), image_std=(0.5, 0.5, 0.5), resize_mode="stretch"
    )


def test_explicit_image_size_wins(tmp_path: Path) -> None:
    from transformers import SiglipVisionConfig

    SiglipVisionConfig(**TINY_VISION).save_pretrained(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"size": {"height": 48, "width": 48}}))
    assert ImageProcessor.from_vision_folder(tmp_path, image_size=24).image_size == 24


def test_preprocessor_config_overrides_config(tmp_path: Path) -> None:
    from transformers import CLIPVisionConfig

    CLIPVisionConfig(**TINY_VISION).save_pretrained(tmp_path)
    preprocessor = {
        "do_center_crop": True,
        "crop_size": {"height": 40, "width": 40},
        "size": {"shortest_edge": 44},
        "image_mean": [0.1, 0.2, 0.3],
        "image_std": [0.3, 0.2, 0.1],
        "resample": 2,
        "image_processor_type": "CLIPImageProcessor",
    }
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(preprocessor))
    processor = ImageProcessor.from_vision_folder(tmp_path)
    assert processor == ImageProcessor(
        image_size=40, image_mean=(0.1, 0.2, 0.3), image_std=(0.3, 0.2, 0.1), resample="bilinear"
    )


@pytest.mark.parametrize(
    ("preprocessor", "image_size", "resample"),
    [
        ({"size": {"height": 48, "width": 48}, "resample": 3}, 48, "bicubic"),
        ({"size": 64, "crop_size": 56, "resample": 0}, 56, "nearest"),
        ({"size": 64, "crop_size": 56, "do_center_crop": False, "resample": 1}, 64, "lanczos"),
        ({"size": {"shortest_edge": 72}}, 72, "bicubic"),
    ],
)
def test_preprocessor_config_alone(tmp_path: Path, preprocessor: dict, image_size: int, resample: str) -> None:
    statistics = {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.25, 0.25, 0.25]}
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({**preprocessor, **statistics}))
    processor = ImageProcessor.from_vision_folder(tmp_path)
    assert (processor.image_size, processor.resample) == (image_size, resample)
    assert processor.image_mean == (0.5, 0.5, 0.5) and processor.image_std == (0.25, 0.25, 0.25)


def test_preprocessor_without_normalisation(tmp_path: Path) -> None:
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"size": 32, "do_normalize": False}))
    processor = ImageProcessor.from_vision_folder(tmp_path)
    assert processor.image_mean == (0.0, 0.0, 0.0) and processor.image_std == (1.0, 1.0, 1.0)


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({}, "neither preprocessor_config.json nor config.json"),
        ({"config.json": {"model_type": "dinov2", "image_size": 32}}, r"image_mean/image_std.*'clip'"),
        ({"config.json": {"model_type": "clip_vision_model"}}, "cannot determine the image size.*image_size="),
        ({"preprocessor_config.json": {"size": {"height": 32, "width": 48}}}, "not square"),
        ({"preprocessor_config.json": {"size": {"longest_edge": 32}}}, "cannot read an image size from size="),
        ({"preprocessor_config.json": {"size": 32, "resample": 4}}, "unsupported resample code 4"),
        (
            {"preprocessor_config.json": {"size": 32, "image_mean": [1, 2], "image_std": [0.5] * 3}},
            "image_mean must be a sequence of 3",
        ),
        ({"config.json": "{broken"}, "cannot read .*config.json as JSON"),
    ],
    ids=["empty", "unknown model", "no size", "non-square", "longest edge", "box filter", "bad mean", "bad json"],
)
def test_from_vision_folder_errors(tmp_path: Path, files: dict, message: str) -> None:
    for name, content in files.items():
        (tmp_path / name).write_text(content if isinstance(content, str) else json.dumps(content))
    # Both the folder and the specific problem must be named, in whichever order the message puts them.
    with pytest.raises(ValueError, match=f"(?s)(?=.*{re.escape(str(tmp_path))})(?=.*{message})"):
        ImageProcessor.from_vision_folder(tmp_path)


def test_from_vision_folder_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=f"not found: {re.escape(str(tmp_path / 'absent'))}"):
        ImageProcessor.from_vision_folder(tmp_path / "absent")


def test_public_names_are_exported() -> None:
    for name in ("ImageLike", "MediaLike", "ImageProcessor"):
        assert name in images.__all__ and hasattr(images, name)
