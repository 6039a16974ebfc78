"""flamingo-vlm: the Flamingo visual language model on any Hugging Face causal LM and vision encoder."""

from flamingo_vlm.config import FlamingoConfig
from flamingo_vlm.model.flamingo import Flamingo, FlamingoOutput
from flamingo_vlm.processing.processor import FlamingoInputs, FlamingoProcessor

__all__ = ["Flamingo", "FlamingoConfig", "FlamingoInputs", "FlamingoOutput", "FlamingoProcessor"]
__version__ = "0.1.0"
