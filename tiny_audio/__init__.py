"""Tiny Audio: a frozen speech encoder, a small trained projector and a frozen LLM that writes the transcript."""

from pathlib import Path

from .audio import SAMPLE_RATE, load_audio
from .configuration import ASRConfig
from .modeling import ASRModel
from .pipeline import ASRPipeline
from .processing import ASRProcessor, num_audio_tokens
from .projector import AudioProjector

# The checkpoint the app and evaluation use when no model is named.
DEFAULT_MODEL = str(Path(__file__).resolve().parent.parent / "assets" / "default-model")

__all__ = [
    "ASRConfig", "ASRModel", "ASRPipeline", "ASRProcessor", "AudioProjector",
    "DEFAULT_MODEL", "SAMPLE_RATE", "load_audio", "num_audio_tokens",
]
