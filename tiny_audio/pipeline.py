"""ASRPipeline: what ``pipeline("automatic-speech-recognition", model=..., trust_remote_code=True)`` runs.

Inputs follow transformers' ASR pipeline contract: a path, encoded bytes, a 16 kHz numpy
array, or ``{"raw" | "array": samples, "sampling_rate": rate}``; or a list of these.
Audio longer than the encoder's window is split at quiet points and transcribed piece by piece.
"""

import contextlib

import torch

from transformers import Pipeline

from .audio import SAMPLE_RATE, load_audio, split_long_audio
from .configuration import GENERATION_DEFAULTS
from .processing import ASRProcessor

GENERATE_KEYS = tuple(GENERATION_DEFAULTS)  # what a call may set, as generation config keys


class ASRPipeline(Pipeline):
    _load_processor = False  # the processor is built from the model's config (towers' own files)
    _load_tokenizer = False
    _load_feature_extractor = False
    _load_image_processor = False

    def __init__(self, model, processor: ASRProcessor | None = None, **kwargs):
        super().__init__(model=model, **kwargs)
        self.asr_processor = processor or ASRProcessor.from_config(model.config)
        self.feature_extractor = self.asr_processor.feature_extractor  # lets the base class batch

    def _sanitize_parameters(self, generate_kwargs=None, **kwargs):
        forward = dict(generate_kwargs or {})
        for key in GENERATE_KEYS:
            if kwargs.get(key) is not None:
                forward[key] = kwargs.pop(key)
        if kwargs:
            raise ValueError(f"unknown argument(s) for the tiny_audio pipeline: {sorted(kwargs)}")
        return {}, forward, {}

    def preprocess(self, inputs):
        audio = load_audio(inputs)
        limit = self.asr_processor.max_seconds
        pieces = split_long_audio(audio, limit) if limit and len(audio) > limit * SAMPLE_RATE else [audio]
        return {"pieces": pieces}

    def _autocast(self):
        dtype = self.model.config.autocast_dtype
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=getattr(torch, dtype))

    def _forward(self, model_inputs, **generate_kwargs):
        groups = model_inputs["pieces"]  # one list of pieces per input (a list of lists when batched)
        if groups and not isinstance(groups[0], list):
            groups = [groups]
        flat = [piece for group in groups for piece in group]
        batch = self.asr_processor(flat).to(self.device)
        with self._autocast():
            tokens = self.model.generate(**batch, tokenizer=self.asr_processor.tokenizer, **generate_kwargs)
        texts = self.asr_processor.batch_decode(tokens)
        joined, start = [], 0
        for group in groups:
            joined.append(" ".join(t for t in texts[start : start + len(group)] if t))
            start += len(group)
        return {"texts": joined}

    def postprocess(self, model_outputs):
        texts = model_outputs["texts"]  # the base class un-batches a list into single strings
        return {"text": texts if isinstance(texts, str) else texts[0]}
