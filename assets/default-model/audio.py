"""Audio in: decode any input form to 16 kHz mono float32, check it, and split long recordings."""

import io
import os
import shutil
import subprocess

import numpy as np

SAMPLE_RATE = 16000  # Hz: what every supported encoder was trained on
SILENCE_PEAK = 1e-4  # |sample| below this everywhere (~ -80 dBFS) counts as silence
MAX_FILE_BYTES = 200 * 1024 * 1024  # refuse to decode files above 200 MB (~ 1 h of 16-bit stereo 48 kHz)


def _decode_with_soundfile(data):
    try:
        import soundfile
    except ImportError:
        return None
    try:
        samples, rate = soundfile.read(data, dtype="float32", always_2d=True)  # (n, channels)
    except Exception:  # soundfile raises several types for unreadable data; ffmpeg gets a try
        return None
    return samples.mean(axis=1), rate


def _decode_with_ffmpeg(data: bytes) -> np.ndarray:
    if shutil.which("ffmpeg") is None:
        raise ValueError("could not decode the audio (not WAV/FLAC/MP3/OGG, and ffmpeg is not installed for other formats)")
    cmd = ["ffmpeg", "-nostdin", "-loglevel", "error", "-i", "pipe:0", "-ac", "1", "-ar", str(SAMPLE_RATE), "-f", "f32le", "pipe:1"]
    proc = subprocess.run(cmd, input=data, capture_output=True)
    if proc.returncode != 0:
        message = proc.stderr.decode(errors="replace").strip().splitlines()
        raise ValueError(f"could not decode the audio: {message[-1] if message else 'ffmpeg failed'}")
    return np.frombuffer(proc.stdout, np.float32)


def decode(data: bytes) -> tuple[np.ndarray, int]:
    """Decode an encoded file's bytes to (mono float32 samples, sample rate)."""
    if len(data) == 0:
        raise ValueError("audio is empty (0 bytes)")
    if len(data) > MAX_FILE_BYTES:
        raise ValueError(f"audio file is {len(data) / 2**20:.0f} MB, above the {MAX_FILE_BYTES / 2**20:.0f} MB limit")
    decoded = _decode_with_soundfile(io.BytesIO(data))
    if decoded is not None:
        return decoded
    return _decode_with_ffmpeg(data), SAMPLE_RATE


def to_float_mono(samples) -> np.ndarray:
    """Integer PCM -> [-1, 1] floats; (channels, n) or (n, channels) -> mono by averaging."""
    samples = np.asarray(samples)
    if samples.dtype.kind in "iu":
        info = np.iinfo(samples.dtype)
        samples = (samples.astype(np.float64) - (info.max + info.min + 1) / 2) / (info.max + 1)
    elif samples.dtype.kind != "f":
        raise ValueError(f"audio samples must be numbers, got dtype {samples.dtype}")
    if samples.ndim == 2:
        channel_axis = 0 if samples.shape[0] < samples.shape[1] else 1
        samples = samples.mean(axis=channel_axis)
    elif samples.ndim != 1:
        raise ValueError(f"audio must be 1-D (mono) or 2-D (multi-channel), got shape {samples.shape}")
    return samples.astype(np.float32)


def resample(samples: np.ndarray, rate: int, target: int = SAMPLE_RATE) -> np.ndarray:
    if rate == target:
        return samples
    if rate <= 0:
        raise ValueError(f"sampling rate must be positive, got {rate}")
    try:
        import soxr

        return soxr.resample(samples, rate, target).astype(np.float32)
    except ImportError:
        pass
    # Fallback without soxr: band-limit by averaging, then linear interpolation.
    duration = len(samples) / rate
    positions = np.arange(int(round(duration * target))) * rate / target
    return np.interp(positions, np.arange(len(samples)), samples).astype(np.float32)


def load_audio(source, sampling_rate: int | None = None) -> np.ndarray:
    """Any supported input -> checked 16 kHz mono float32 samples.

    ``source``: a file path, encoded bytes, a numpy array / torch tensor (``sampling_rate``
    defaults to 16 kHz), or a dict ``{"raw" | "array": samples, "sampling_rate": rate}``.
    Raises ValueError for empty, silent, non-finite or undecodable input. Never normalizes
    loudness: the encoder's feature extractor does what the encoder expects.
    """
    if isinstance(source, dict):
        key = "raw" if "raw" in source else "array" if "array" in source else None
        if key is None or "sampling_rate" not in source:
            raise ValueError('audio dict needs "raw" (or "array") and "sampling_rate" keys')
        return load_audio(source[key], int(source["sampling_rate"]))
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise ValueError(f"audio file not found: {path}")
        with open(path, "rb") as f:
            samples, rate = decode(f.read())
    elif isinstance(source, (bytes, bytearray)):
        samples, rate = decode(bytes(source))
    else:
        if hasattr(source, "detach"):  # torch.Tensor
            source = source.detach().cpu().numpy()
        if not isinstance(source, (np.ndarray, list)):
            raise ValueError(f"unsupported audio input of type {type(source).__name__}")
        samples, rate = to_float_mono(source), sampling_rate or SAMPLE_RATE
    samples = to_float_mono(samples)
    check_audio(samples)
    return resample(samples, rate)


def check_audio(samples: np.ndarray) -> None:
    if samples.size == 0:
        raise ValueError("audio is empty (0 samples)")
    if not np.all(np.isfinite(samples)):
        raise ValueError("audio contains NaN or infinite samples")
    peak = float(np.max(np.abs(samples)))
    if peak < SILENCE_PEAK:
        raise ValueError(f"audio is silent (peak amplitude {peak:.1e} < {SILENCE_PEAK:.0e})")


def split_long_audio(samples: np.ndarray, max_seconds: float, search_seconds: float = 5.0) -> list[np.ndarray]:
    """Split audio longer than ``max_seconds`` into pieces, cutting at the quietest point.

    Each cut is placed at the lowest-energy 20 ms frame within the last ``search_seconds``
    before the limit, so words are rarely cut in half. Nothing is dropped.
    """
    max_len = int(max_seconds * SAMPLE_RATE)
    frame = int(0.02 * SAMPLE_RATE)
    pieces, start = [], 0
    while len(samples) - start > max_len:
        window_start = start + max_len - int(search_seconds * SAMPLE_RATE)
        window = samples[window_start : start + max_len]
        usable = len(window) // frame * frame
        energy = np.square(window[:usable]).reshape(-1, frame).mean(axis=1)
        cut = window_start + int(np.argmin(energy)) * frame + frame // 2
        pieces.append(samples[start:cut])
        start = cut
    pieces.append(samples[start:])
    return pieces
