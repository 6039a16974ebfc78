"""flamingo-vlm: the Flamingo visual language model on any Hugging Face causal LM and vision encoder.

    from flamingo_vlm import Flamingo, FlamingoConfig, FlamingoProcessor

Names are imported on first use, so the command line starts fast (``flamingo --help`` needs no torch).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flamingo_vlm.config import FlamingoConfig
    from flamingo_vlm.model.flamingo import Flamingo, FlamingoOutput
    from flamingo_vlm.processing.processor import FlamingoInputs, FlamingoProcessor

_EXPORTS = {
    "Flamingo": "flamingo_vlm.model.flamingo",
    "FlamingoOutput": "flamingo_vlm.model.flamingo",
    "FlamingoConfig": "flamingo_vlm.config",
    "FlamingoInputs": "flamingo_vlm.processing.processor",
    "FlamingoProcessor": "flamingo_vlm.processing.processor",
}
__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'flamingo_vlm' has no attribute {name!r}")
