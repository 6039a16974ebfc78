"""Image and video preprocessing for Flamingo's vision encoder, using only PIL and numpy.

Every input (a PIL image of any mode, a numpy array, or a path to an image file) becomes an RGB PIL image; it is then
resized to a square of ``image_size`` pixels and normalised into a channels-first float32 tensor. A video is a
sequence of frames and becomes a ``(frames, 3, S, S)`` tensor.

Transparent pixels and the padding of ``pad_to_square`` are filled with the normalisation mean colour rather than
black, so that they normalise to (almost) zero: the encoder then sees "nothing" instead of a black border.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import torch
from PIL import ExifTags, Image, ImageOps

__all__ = [
    "CLIP_IMAGE_MEAN",
    "CLIP_IMAGE_STD",
    "IMAGE_PROCESSOR_FILENAME",
    "RESAMPLE_MODES",
    "RESIZE_MODES",
    "SIGLIP_IMAGE_MEAN",
    "SIGLIP_IMAGE_STD",
    "ImageLike",
    "ImageProcessor",
    "MediaLike",
]

ImageLike: TypeAlias = Image.Image | np.ndarray | str | os.PathLike
MediaLike: TypeAlias = ImageLike | Sequence[ImageLike]

CLIP_IMAGE_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_IMAGE_STD = (0.26862954, 0.26130258, 0.27577711)
SIGLIP_IMAGE_MEAN = (0.5, 0.5, 0.5)
SIGLIP_IMAGE_STD = (0.5, 0.5, 0.5)

IMAGE_PROCESSOR_FILENAME = "flamingo_image_processor.json"

RESIZE_MODES = ("center_crop", "pad_to_square", "stretch")
_RESAMPLE_FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}
RESAMPLE_MODES = tuple(_RESAMPLE_FILTERS)
# Hugging Face preprocessor configs store PIL's integer filter codes.
_RESAMPLE_BY_PIL_CODE = {int(pil_filter): name for name, pil_filter in _RESAMPLE_FILTERS.items()}

# Normalisation statistics for vision configs that ship without a preprocessor_config.json.
_MODEL_TYPE_STATISTICS = {
    "clip": (CLIP_IMAGE_MEAN, CLIP_IMAGE_STD),
    "clip_vision_model": (CLIP_IMAGE_MEAN, CLIP_IMAGE_STD),
    "siglip": (SIGLIP_IMAGE_MEAN, SIGLIP_IMAGE_STD),
    "siglip_vision_model": (SIGLIP_IMAGE_MEAN, SIGLIP_IMAGE_STD),
}

# What PIL raises for unreadable, truncated, corrupt or oversized image files.
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)

_ARRAY_LAYOUT_HELP = "expected an image array of shape (H, W) or (H, W, C) with C in {1, 3, 4}"


@dataclass
class ImageProcessor:
    """Turns images/videos into normalised pixel tensors for a vision encoder.

    Attributes:
        image_size: Side length ``S`` of the square the encoder expects.
        image_mean: Per-channel mean (RGB, on the [0, 1] scale) subtracted during normalisation; its 8-bit rounding
            is also the colour used for transparency and for ``pad_to_square`` padding.
        image_std: Per-channel standard deviation divided out during normalisation.
        resize_mode: ``"center_crop"`` (short side to ``S``, keep aspect, crop the centre), ``"pad_to_square"``
            (pad the short side with the mean colour, centred, then resize) or ``"stretch"`` (resize to ``S x S``).
        resample: PIL resampling filter: ``"nearest"``, ``"bilinear"``, ``"bicubic"`` or ``"lanczos"``.
    """

    image_size: int = 224
    image_mean: tuple[float, float, float] = CLIP_IMAGE_MEAN
    image_std: tuple[float, float, float] = CLIP_IMAGE_STD
    resize_mode: str = "center_crop"
    resample: str = "bicubic"

    def __post_init__(self) -> None:
        if isinstance(self.image_size, bool) or not isinstance(self.image_size, int) or self.image_size <= 0:
            raise ValueError(f"image_size must be a positive int, got {self.image_size!r}")
        self.image_mean = _rgb_triple("image_mean", self.image_mean)
        self.image_std = _rgb_triple("image_std", self.image_std)
        if not all(0.0 <= value <= 1.0 for value in self.image_mean):
            raise ValueError(f"image_mean must lie in [0, 1] (pixels are scaled to [0, 1]), got {self.image_mean}")
        if not all(value > 0.0 for value in self.image_std):
            raise ValueError(f"image_std must be positive, got {self.image_std}")
        if self.resize_mode not in RESIZE_MODES:
            raise ValueError(f"resize_mode must be one of {RESIZE_MODES}, got {self.resize_mode!r}")
        if self.resample not in _RESAMPLE_FILTERS:
            raise ValueError(f"resample must be one of {RESAMPLE_MODES}, got {self.resample!r}")

    # ------------------------------------------------------------------ loading

    def load_image(self, image: ImageLike) -> Image.Image:
        """Load ``image`` as an RGB PIL image.

        Accepts a PIL image of any mode, a numpy array ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)``
        (uint8 in [0, 255], float in [0, 1], or bool), or a path to an image file. Transparent pixels are composited
        onto the mean colour, and EXIF orientation is applied so photos come out upright.

        Raises:
            ValueError: if the file is missing or undecodable, the array has an unsupported shape, dtype or value
                range, or ``image`` is not an image at all.
        """
        if isinstance(image, Image.Image):
            return _pil_to_rgb(image, self._mean_color())
        if isinstance(image, np.ndarray):
            return _array_to_rgb(image, self._mean_color())
        if isinstance(image, (str, os.PathLike)):
            return self._open_image_file(os.fsdecode(image))
        hint = " (convert a CHW tensor with tensor.permute(1, 2, 0).numpy())" if isinstance(image, torch.Tensor) else ""
        raise ValueError(
            f"cannot load an image from an object of type {type(image).__module__}.{type(image).__qualname__}; "
            f"expected a PIL.Image.Image, a numpy array (H, W[, C]) or a path to an image file{hint}"
        )

    def _open_image_file(self, name: str) -> Image.Image:
        path = Path(name)
        if not path.exists():
            # Checked on the raw string: Path collapses the "//" of a URL.
            hint = (
                " (URLs are not downloaded; fetch the file first)" if name.startswith(("http://", "https://")) else ""
            )
            raise ValueError(f"image file not found: {name}{hint}")
        if not path.is_file():
            raise ValueError(f"image path is not a file: {path}")
        try:
            opened = Image.open(path)
        except _DECODE_ERRORS as error:
            raise ValueError(f"cannot decode {path} as an image: {error}") from error
        with opened:
            # Image.open is lazy: decoding errors (e.g. truncation) only surface on load().
            try:
                opened.load()
            except _DECODE_ERRORS as error:
                raise ValueError(f"cannot decode {path} as an image: {error}") from error
            try:
                return _pil_to_rgb(opened, self._mean_color())
            except ValueError as error:
                raise ValueError(f"{path}: {error}") from error

    # ------------------------------------------------------------------ transforms

    def __call__(self, image: ImageLike) -> torch.Tensor:
        """Preprocess one image into a ``(3, image_size, image_size)`` float32 tensor."""
        if not _is_upright_rgb(image):  # what decode_image returns already is: no second conversion copy
            image = self.load_image(image)
        return self._normalise(self._resize(image))

    def preprocess_media(self, media: MediaLike) -> torch.Tensor:
        """Preprocess an image or a video into a ``(frames, 3, image_size, image_size)`` float32 tensor.

        A single image gives one frame. A video is a list/tuple of frames (each anything :meth:`load_image` accepts)
        or a 4-D numpy array ``(F, H, W, C)``; frames keep their order.

        Raises:
            ValueError: for an empty video or any frame that :meth:`load_image` rejects (the message names the frame).
        """
        if isinstance(media, np.ndarray) and media.ndim == 4:
            frames: Sequence[ImageLike] = list(media)
        elif isinstance(media, (list, tuple)):
            frames = media
        else:
            return self(media).unsqueeze(0)
        if len(frames) == 0:
            raise ValueError("empty video: expected at least one frame, got 0")
        processed = []
        for index, frame in enumerate(frames):
            try:
                processed.append(self(frame))
            except ValueError as error:
                raise ValueError(f"video frame {index}: {error}") from error
        return torch.stack(processed)

    def _mean_color(self) -> tuple[int, int, int]:
        red, green, blue = (round(value * 255) for value in self.image_mean)
        return red, green, blue

    def _resize(self, image: Image.Image) -> Image.Image:
        size = self.image_size
        resample = _RESAMPLE_FILTERS[self.resample]
        width, height = image.size
        if width == height == size:
            return image  # every mode leaves a square image of the target size as it is (PIL would copy it)
        if self.resize_mode == "stretch":
            return image.resize((size, size), resample)
        if self.resize_mode == "pad_to_square":
            side = max(width, height)
            canvas = Image.new("RGB", (side, side), self._mean_color())
            canvas.paste(image, ((side - width) // 2, (side - height) // 2))
            return canvas.resize((size, size), resample)
        # center_crop, truncating and flooring exactly as Hugging Face's CLIP image processor does, so that
        # pixels match the preprocessing the encoder's published weights were evaluated with.
        if width <= height:
            new_width, new_height = size, int(height * size / width)
        else:
            new_width, new_height = int(width * size / height), size
        resized = image.resize((new_width, new_height), resample)
        left = (new_width - size) // 2
        top = (new_height - size) // 2
        return resized.crop((left, top, left + size, top + size))

    def _normalise(self, image: Image.Image) -> torch.Tensor:
        # (x / 255 - mean) / std folded into one multiply-add per pixel, done on channel planes: numpy's
        # broadcasting is slow along an innermost axis of 3 (channels last), 2.5x slower in all at 64x64.
        std = np.asarray(self.image_std, dtype=np.float64)
        scale = (1.0 / (255.0 * std)).astype(np.float32)[:, None, None]  # (3, 1, 1)
        offset = (-np.asarray(self.image_mean, dtype=np.float64) / std).astype(np.float32)[:, None, None]
        pixels = np.asarray(image).astype(np.float32)  # (H, W, 3)
        pixels = np.ascontiguousarray(pixels.transpose(2, 0, 1))  # (3, H, W)
        pixels *= scale
        pixels += offset
        return torch.from_numpy(pixels)

    # ------------------------------------------------------------------ serialisation

    def to_dict(self) -> dict:
        """Return the settings as a JSON-serialisable dict (tuples become lists)."""
        settings = asdict(self)
        settings["image_mean"] = list(self.image_mean)
        settings["image_std"] = list(self.image_std)
        return settings

    @classmethod
    def from_dict(cls, d: dict) -> ImageProcessor:
        """Build a processor from :meth:`to_dict` output; missing keys take their defaults.

        Raises:
            ValueError: if ``d`` has unknown keys (they are named) or invalid values.
        """
        if not isinstance(d, Mapping):
            raise ValueError(f"expected a dict of image processor settings, got {type(d).__name__}")
        known = {field.name for field in fields(cls)}
        unknown = sorted(set(d) - known, key=str)
        if unknown:
            raise ValueError(f"unknown image processor settings {unknown}; expected a subset of {sorted(known)}")
        return cls(**d)

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write the settings to ``directory/flamingo_image_processor.json``, creating ``directory`` if needed.

        The file is written to a temporary name and then renamed over the target, so readers never see a partial file.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        # A unique name in the same directory keeps os.replace atomic and concurrent writers apart; plain open()
        # (unlike tempfile) honours the umask, so the final file gets ordinary permissions.
        temporary = directory / f".{IMAGE_PROCESSOR_FILENAME}.{os.getpid()}.{uuid.uuid4().hex}.tmp"
        try:
            with open(temporary, "x", encoding="utf-8") as handle:
                json.dump(self.to_dict(), handle, indent=2, sort_keys=True)
                handle.write("\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, directory / IMAGE_PROCESSOR_FILENAME)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> ImageProcessor:
        """Load a processor written by :meth:`save_pretrained`.

        Raises:
            ValueError: if the settings file is missing, not valid JSON, or holds unknown keys or invalid values.
        """
        path = Path(directory) / IMAGE_PROCESSOR_FILENAME
        if not path.is_file():
            raise ValueError(
                f"no image processor settings at {path}; write them with ImageProcessor.save_pretrained, or build "
                "one from a Hugging Face vision model folder with ImageProcessor.from_vision_folder"
            )
        try:
            return cls.from_dict(_read_json_object(path))
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from error

    @classmethod
    def from_vision_folder(
        cls,
        directory: str | os.PathLike,
        *,
        image_size: int | None = None,
        resize_mode: str = "center_crop",
    ) -> ImageProcessor:
        """Build a processor matching a Hugging Face vision model folder.

        Settings come from ``config.json`` (the image size, and CLIP or SigLIP statistics by ``model_type``) and
        are overridden by ``preprocessor_config.json`` where it has them (``image_mean``, ``image_std``, the image
        size from ``crop_size`` when centre cropping or else ``size``, and ``resample``). An explicit
        ``image_size`` wins over both. SigLIP processors stretch rather than crop; pass ``resize_mode="stretch"``
        to match them exactly.

        Raises:
            ValueError: if the folder has neither file, a file is malformed, or no image size or normalisation
                statistics can be determined (the message says which and how to supply it).
        """
        directory = Path(directory)
        if not directory.is_dir():
            raise ValueError(f"vision model folder not found: {directory}")
        config_path = directory / "config.json"
        preprocessor_path = directory / "preprocessor_config.json"
        if not config_path.is_file() and not preprocessor_path.is_file():
            raise ValueError(f"{directory} has neither preprocessor_config.json nor config.json")

        settings: dict[str, Any] = {"resize_mode": resize_mode}
        if config_path.is_file():
            config = _read_json_object(config_path)
            model_type = config.get("model_type")
            if model_type in _MODEL_TYPE_STATISTICS:
                settings["image_mean"], settings["image_std"] = _MODEL_TYPE_STATISTICS[model_type]
            vision_config = config.get("vision_config")
            section = vision_config if isinstance(vision_config, Mapping) else config
            if section.get("image_size") is not None:
                settings["image_size"] = _edge_length(section["image_size"], "image_size", config_path)
        if preprocessor_path.is_file():
            settings.update(_settings_from_preprocessor(preprocessor_path))
        if image_size is not None:
            settings["image_size"] = image_size

        if "image_size" not in settings:
            raise ValueError(
                f"cannot determine the image size for {directory}: neither config.json nor preprocessor_config.json "
                "gives one; pass image_size="
            )
        if "image_mean" not in settings or "image_std" not in settings:
            raise ValueError(
                f"cannot determine image_mean/image_std for {directory}: add them to preprocessor_config.json "
                f"(statistics are built in only for model types {sorted(_MODEL_TYPE_STATISTICS)})"
            )
        try:
            return cls(**settings)
        except ValueError as error:
            raise ValueError(f"{directory}: {error}") from error


# ---------------------------------------------------------------------- helpers


def _rgb_triple(name: str, value: Any) -> tuple[float, float, float]:
    """Validate a 3-channel statistic (JSON gives lists) and return it as a tuple of floats."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)) or len(value) != 3:
        raise ValueError(f"{name} must be a sequence of 3 numbers (R, G, B), got {value!r}")
    if not all(isinstance(item, numbers.Real) and not isinstance(item, (bool, np.bool_)) for item in value):
        raise ValueError(f"{name} must be a sequence of 3 numbers (R, G, B), got {value!r}")
    red, green, blue = (float(item) for item in value)
    if not all(math.isfinite(item) for item in (red, green, blue)):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return red, green, blue


def _is_upright_rgb(image: object) -> bool:
    """True for a PIL RGB image with no EXIF rotation to apply: ``load_image`` would only copy it."""
    return (isinstance(image, Image.Image) and image.mode == "RGB"
            and image.getexif().get(ExifTags.Base.Orientation, 1) == 1)


def _pil_to_rgb(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """Convert a PIL image of any mode to RGB, upright, with transparency composited onto ``background``."""
    if image.getexif().get(ExifTags.Base.Orientation, 1) != 1:
        image = ImageOps.exif_transpose(image)
    if image.mode.startswith(("I", "F")):
        return _high_bit_depth_to_rgb(image)
    if image.mode == "La":
        # Premultiplied LA has no direct route to RGBA in PIL.
        image = image.convert("LA")
    try:
        if image.has_transparency_data:
            rgba = image.convert("RGBA")
            canvas = Image.new("RGBA", rgba.size, (*background, 255))
            return Image.alpha_composite(canvas, rgba).convert("RGB")
        return image.convert("RGB")
    except ValueError as error:
        raise ValueError(f"cannot convert a PIL image of mode {image.mode!r} to RGB: {error}") from error


def _high_bit_depth_to_rgb(image: Image.Image) -> Image.Image:
    """Map 16/32-bit integer (``I;16*``, ``I``) and float (``F``) grayscale images onto 8 bits.

    PIL's own ``convert`` clips such images at 255, which turns most 16-bit photos white, so the value range is
    chosen from the mode and the data instead.
    """
    values = np.asarray(image)
    if image.mode.startswith("I;16"):
        gray = values.astype(np.float32) / 257.0
    elif image.mode == "I":
        low, high = int(values.min()), int(values.max())
        if low < 0 or high > 65535:
            raise ValueError(
                f"a mode 'I' image must hold 8-bit or 16-bit values, got range [{low}, {high}]; rescale it to "
                "[0, 255] and convert to mode 'L'"
            )
        # Values that fit in 8 bits are taken as 8-bit (e.g. Image.convert("I")); anything larger is a 16-bit image.
        gray = values.astype(np.float32) / (257.0 if high > 255 else 1.0)
    elif image.mode == "F":
        if not np.isfinite(values).all():
            raise ValueError("a mode 'F' image contains NaN or infinite values")
        low, high = float(values.min()), float(values.max())
        if low < 0.0 or high > 255.0:
            raise ValueError(f"a mode 'F' image must lie in [0, 1] or [0, 255], got range [{low}, {high}]")
        # Data inside [0, 1] is read as [0, 1]-scaled; on a [0, 255] scale it would be near-black anyway.
        gray = values * 255.0 if high <= 1.0 else values
    else:
        raise ValueError(f"unsupported PIL image mode {image.mode!r}")
    return Image.fromarray(np.rint(gray).astype(np.uint8)).convert("RGB")


def _array_to_rgb(array: np.ndarray, background: tuple[int, int, int]) -> Image.Image:
    """Convert an (H, W) or (H, W, C) numpy image to RGB; channels-first layouts are rejected, not guessed."""
    if array.ndim == 3 and array.shape[-1] not in (1, 3, 4):
        hint = (
            "; this looks channels-first (C, H, W): pass array.transpose(1, 2, 0)"
            if array.shape[0] in (1, 3, 4)
            else ""
        )
        raise ValueError(f"{_ARRAY_LAYOUT_HELP}, got shape {array.shape}{hint}")
    if array.ndim not in (2, 3):
        hint = "; pass a (frames, H, W, C) video to preprocess_media" if array.ndim == 4 else ""
        raise ValueError(f"{_ARRAY_LAYOUT_HELP}, got a {array.ndim}-D array of shape {array.shape}{hint}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"image array is empty: shape {array.shape}")
    pixels = _array_to_uint8(array)
    if pixels.ndim == 3 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    # fromarray infers L, RGB or RGBA from the uint8 shape.
    return _pil_to_rgb(Image.fromarray(np.ascontiguousarray(pixels)), background)


def _array_to_uint8(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * np.uint8(255)
    if np.issubdtype(array.dtype, np.floating):
        values = array.astype(np.float32)
        if not np.isfinite(values).all():
            raise ValueError("float image array contains NaN or infinite values")
        low, high = float(values.min()), float(values.max())
        if low < 0.0 or high > 1.0:
            raise ValueError(
                f"float image arrays must lie in [0, 1], got range [{low:g}, {high:g}]; "
                "divide [0, 255] data by 255 or pass it as uint8"
            )
        return np.rint(values * 255.0).astype(np.uint8)
    raise ValueError(
        f"unsupported image array dtype {array.dtype}; expected uint8 in [0, 255], float in [0, 1] or bool "
        "(convert 8-bit data with .astype(np.uint8); divide 16-bit data by 257 first)"
    )


def _read_json_object(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot read {path} as JSON: {error}") from error
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def _edge_length(value: Any, key: str, path: Path) -> int:
    """Read a square side length from an int or a Hugging Face size dict."""
    if isinstance(value, Mapping):
        if "height" in value and "width" in value:
            if value["height"] != value["width"]:
                raise ValueError(f"{path}: {key} {dict(value)} is not square; pass image_size= explicitly")
            value = value["height"]
        elif "shortest_edge" in value:
            value = value["shortest_edge"]
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(
            f"{path}: cannot read an image size from {key}={value!r}; expected a positive int or a dict with "
            "'shortest_edge' or 'height' and 'width'"
        )
    return value


def _settings_from_preprocessor(path: Path) -> dict[str, Any]:
    """Translate a Hugging Face ``preprocessor_config.json`` into ImageProcessor settings."""
    config = _read_json_object(path)
    settings: dict[str, Any] = {}
    if config.get("do_normalize") is False:
        settings["image_mean"], settings["image_std"] = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    else:
        for key in ("image_mean", "image_std"):
            if key in config:
                settings[key] = config[key]
    # The encoder sees the crop when the processor centre-crops, otherwise the resized image.
    if config.get("crop_size") is not None and config.get("do_center_crop", True):
        settings["image_size"] = _edge_length(config["crop_size"], "crop_size", path)
    elif config.get("size") is not None:
        settings["image_size"] = _edge_length(config["size"], "size", path)
    if "resample" in config:
        code = config["resample"]
        if isinstance(code, bool) or not isinstance(code, int) or code not in _RESAMPLE_BY_PIL_CODE:
            supported = dict(sorted(_RESAMPLE_BY_PIL_CODE.items()))
            raise ValueError(f"{path}: unsupported resample code {code!r}; supported PIL codes are {supported}")
        settings["resample"] = _RESAMPLE_BY_PIL_CODE[code]
    return settings
