"""Shared fixtures: tiny random towers saved to disk, so every test runs offline in seconds."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers is imported: a stray hub call fails loudly
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import pytest
import soundfile as sf
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers
from transformers import (
    HubertConfig,
    HubertModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    SmolLM3Config,
    SmolLM3ForCausalLM,
    Wav2Vec2Config,
    Wav2Vec2FeatureExtractor,
    Wav2Vec2Model,
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperForConditionalGeneration,
)

from tiny_audio.presets import make_config

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
TEXT = [
    "the quick brown fox jumps over the lazy dog",
    "hello world this is a tiny tokenizer for tests",
    "transcribe the speech to text please",
    "one two three four five six seven eight nine ten",
]


def make_tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<unk>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(TEXT * 10, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<|im_end|>"
    )
    fast.chat_template = CHATML
    return fast


def save_encoder(kind: str, path) -> None:
    torch.manual_seed(0)
    if kind == "whisper":
        config = WhisperConfig(
            vocab_size=64, num_mel_bins=80, d_model=32, encoder_layers=2, decoder_layers=1, encoder_attention_heads=2,
            decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_source_positions=1500,
            pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1,
        )
        WhisperForConditionalGeneration(config).save_pretrained(path)
        WhisperFeatureExtractor(feature_size=80).save_pretrained(path)
        return
    common = dict(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, conv_dim=(16, 16, 16),
        conv_kernel=(10, 3, 3), conv_stride=(5, 4, 4), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
        feat_extract_norm="layer", do_stable_layer_norm=True, vocab_size=32,
    )
    model = HubertModel(HubertConfig(**common)) if kind == "hubert" else Wav2Vec2Model(Wav2Vec2Config(**common))
    model.save_pretrained(path)
    Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True).save_pretrained(path)


def save_decoder(kind: str, path) -> None:
    torch.manual_seed(0)
    tokenizer = make_tokenizer()
    common = dict(
        vocab_size=len(tokenizer), hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=True, initializer_range=0.2,  # a responsive random LM
    )
    model = LlamaForCausalLM(LlamaConfig(**common)) if kind == "llama" else SmolLM3ForCausalLM(SmolLM3Config(**common))
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)


@pytest.fixture(scope="session")
def tower_dir(tmp_path_factory):
    """Folder of tiny random towers, built once: whisper, hubert, wav2vec2, llama, smollm3."""
    root = tmp_path_factory.mktemp("towers")
    for kind in ("whisper", "hubert", "wav2vec2"):
        save_encoder(kind, root / kind)
    for kind in ("llama", "smollm3"):
        save_decoder(kind, root / kind)
    return root


@pytest.fixture(scope="session")
def tiny_config(tower_dir):
    """Config factory for any encoder/decoder pair of tiny towers."""

    def build(encoder="whisper", decoder="llama", **overrides):
        overrides.setdefault("projector_hidden_dim", 64)
        overrides.setdefault("generation", {"max_new_tokens": 8})
        return make_config(str(tower_dir / encoder), str(tower_dir / decoder), **overrides)

    return build


def tone(seconds: float, rate: int = 16000, freq: float = 440.0, seed: int = 0) -> np.ndarray:
    """A non-silent test signal: a tone plus a little noise."""
    t = np.arange(int(seconds * rate)) / rate
    noise = np.random.default_rng(seed).normal(0, 0.01, len(t))
    return (0.3 * np.sin(2 * np.pi * freq * t) + noise).astype(np.float32)


@pytest.fixture
def wav_file(tmp_path):
    path = tmp_path / "tone.wav"
    sf.write(path, tone(1.5), 16000)
    return path
