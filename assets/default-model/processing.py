"""ASRProcessor: audio -> encoder features, prompt (+ transcript) -> token ids, token ids -> text.

The prompt format and the number of audio tokens per clip are defined here once and used
identically by training and inference.
"""

import math

import numpy as np
import torch

from transformers import AutoConfig, AutoFeatureExtractor, AutoTokenizer, BatchFeature

from .audio import SAMPLE_RATE
from .weights import resolve

AUDIO_TOKEN_ID = -200  # placeholder id in input_ids; the model swaps in projected audio there
AUDIO_MARKER = "<audio>"  # where the audio goes in the rendered prompt (split out, never tokenized)
WHISPER_HOP = 160  # samples per mel frame (10 ms)


def encoder_frames(encoder_type: str, encoder_config, num_samples: int) -> int:
    """Number of encoder output frames (50 Hz) for a clip of ``num_samples`` at 16 kHz."""
    if encoder_type == "whisper":
        mel = num_samples // WHISPER_HOP
        return (mel + 1) // 2  # conv2 has stride 2, kernel 3, padding 1
    length = num_samples  # wav2vec2 / HuBERT conv feature extractor, no padding
    for kernel, stride in zip(encoder_config.conv_kernel, encoder_config.conv_stride):
        length = (length - kernel) // stride + 1
    return max(length, 0)


def num_audio_tokens(encoder_type: str, encoder_config, num_samples: int, downsample_rate: int) -> int:
    """Number of LLM positions a clip occupies: ceil(encoder frames / k)."""
    return math.ceil(encoder_frames(encoder_type, encoder_config, num_samples) / downsample_rate)


def max_audio_seconds(encoder_type: str, encoder_config) -> float | None:
    """Longest clip the encoder accepts in one window (Whisper: 30 s); None when unbounded."""
    if encoder_type == "whisper":
        return encoder_config.max_source_positions * 2 * WHISPER_HOP / SAMPLE_RATE
    return None


def render_prompt(tokenizer, instruction: str) -> tuple[str, str]:
    """The text before and after the audio, through the decoder's chat template when it has one."""
    if tokenizer.chat_template:
        messages = [{"role": "system", "content": instruction}, {"role": "user", "content": AUDIO_MARKER}]
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    else:  # base models without a template
        text = f"{instruction}\nAudio: {AUDIO_MARKER}\nTranscript:"
    before, after = text.split(AUDIO_MARKER)
    return before, after


class ASRProcessor:
    """Feature extractor of the encoder + tokenizer of the decoder, glued by the prompt format."""

    def __init__(self, feature_extractor, tokenizer, encoder_config, config):
        self.feature_extractor = feature_extractor
        self.tokenizer = tokenizer
        self.encoder_config = encoder_config
        self.config = config
        before, after = render_prompt(tokenizer, config.instruction)
        self.prompt_before = tokenizer(before, add_special_tokens=False)["input_ids"]
        self.prompt_after = tokenizer(after, add_special_tokens=False)["input_ids"]
        if tokenizer.eos_token_id is None:
            raise ValueError("the decoder's tokenizer has no eos token, so transcripts could not end")
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.max_seconds = max_audio_seconds(config.encoder_type, encoder_config)

    @classmethod
    def from_config(cls, config, **hub_kwargs):
        encoder_path = resolve(config.encoder_name_or_path, config.weights_source)
        decoder_path = resolve(config.decoder_name_or_path, config.weights_source)
        return cls(
            AutoFeatureExtractor.from_pretrained(encoder_path, **hub_kwargs),
            AutoTokenizer.from_pretrained(decoder_path, **hub_kwargs),
            AutoConfig.from_pretrained(encoder_path, **hub_kwargs),
            config,
        )

    def audio_tokens(self, num_samples: int) -> int:
        return num_audio_tokens(self.config.encoder_type, self.encoder_config, num_samples, self.config.downsample_rate)

    def features(self, audio: list[np.ndarray]) -> dict:
        """Per-clip features (never padded to a window), then zero-padded into one batch."""
        if self.max_seconds is not None:
            for clip in audio:
                if len(clip) > self.max_seconds * SAMPLE_RATE:
                    raise ValueError(
                        f"clip is {len(clip) / SAMPLE_RATE:.1f} s, above the encoder's {self.max_seconds:.0f} s window; "
                        "split it first (tiny_audio.audio.split_long_audio, as the pipeline does)"
                    )
        for clip in audio:
            if self.audio_tokens(len(clip)) < 1:
                raise ValueError(f"clip is too short ({len(clip)} samples at {SAMPLE_RATE} Hz) to give one audio token")
        with torch.autocast("cpu", enabled=False):  # mel spectrograms in fp32 even inside a bf16 region
            return self._features(audio)

    def _features(self, audio: list[np.ndarray]) -> dict:
        if self.config.encoder_type == "whisper":
            feats = [
                self.feature_extractor(clip, sampling_rate=SAMPLE_RATE, padding="longest", return_tensors="pt")["input_features"][0]
                for clip in audio
            ]  # each (n_mels, T_i)
            lengths = torch.tensor([f.shape[-1] for f in feats])
            batch = torch.zeros(len(feats), feats[0].shape[0], int(lengths.max()))
            for i, f in enumerate(feats):
                batch[i, :, : f.shape[-1]] = f
        else:
            feats = [
                self.feature_extractor(clip, sampling_rate=SAMPLE_RATE, return_tensors="pt")["input_values"][0]
                for clip in audio
            ]  # each (T_i,), normalized per clip when the extractor does so
            lengths = torch.tensor([len(f) for f in feats])
            batch = torch.zeros(len(feats), int(lengths.max()))
            for i, f in enumerate(feats):
                batch[i, : len(f)] = f
        return {"input_features": batch, "feature_lengths": lengths}

    def prompt_ids(self, audio_tokens: int) -> list[int]:
        return self.prompt_before + [AUDIO_TOKEN_ID] * audio_tokens + self.prompt_after

    def target_ids(self, text: str) -> list[int]:
        # A leading space, so the first word is the same token as anywhere else (" Please", not "Please"):
        # the CTC head otherwise learns two tokens per word and joint decoding wrote both ("Please please
        # try again", "Ext extension": 21 of 305 real prompts). Byte-level BPE (SmolLM2/3) keeps it as
        # one token; the pipeline strips the transcript.
        ids = self.tokenizer(" " + text.strip(), add_special_tokens=False)["input_ids"]
        return ids + [self.tokenizer.eos_token_id]

    def __call__(self, audio: list[np.ndarray], text: list[str] | None = None) -> BatchFeature:
        """Batch for generation (``text`` None: prompts left-padded) or training (labels, right-padded)."""
        if isinstance(audio, np.ndarray) and audio.ndim == 1:
            audio = [audio]
        out = self.features(audio)
        out.update(self.token_batch([self.audio_tokens(len(clip)) for clip in audio], text))
        return BatchFeature(out)

    def token_batch(self, audio_tokens: list[int], text: list[str] | None = None) -> dict:
        """input_ids / attention_mask (/ labels) for clips of the given audio-token counts.

        Used directly by training on cached encoder features, and by ``__call__``.
        """
        if text is not None and len(text) != len(audio_tokens):
            raise ValueError(f"got {len(audio_tokens)} clips but {len(text)} transcripts")
        sequences, label_rows = [], []
        for i, count in enumerate(audio_tokens):
            prompt = self.prompt_ids(count)
            if text is None:
                sequences.append(prompt)
            else:
                target = self.target_ids(text[i])
                sequences.append(prompt + target)
                label_rows.append([-100] * len(prompt) + target)
        width = max(len(s) for s in sequences)
        left = text is None  # generation continues from the last position, so pad on the left
        input_ids = torch.full((len(sequences), width), self.pad_token_id)
        attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
        labels = torch.full((len(sequences), width), -100)
        for i, seq in enumerate(sequences):
            span = slice(width - len(seq), width) if left else slice(0, len(seq))
            input_ids[i, span] = torch.tensor(seq)
            attention_mask[i, span] = 1
            if text is not None:
                labels[i, span] = torch.tensor(label_rows[i])
        out = {"input_ids": input_ids, "attention_mask": attention_mask}
        if text is not None:
            out["labels"] = labels
        return out

    def batch_decode(self, token_ids) -> list[str]:
        return [t.strip() for t in self.tokenizer.batch_decode(token_ids, skip_special_tokens=True)]
