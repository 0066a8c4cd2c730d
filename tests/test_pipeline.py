"""pipeline("automatic-speech-recognition", trust_remote_code=True) on a saved tiny checkpoint: every input form."""

import io

import numpy as np
import pytest
import soundfile as sf
from transformers import pipeline

from conftest import tone
from tiny_audio import ASRModel, load_audio
from tiny_audio.audio import split_long_audio


@pytest.fixture(scope="module")
def checkpoint(tiny_config, tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt")
    ASRModel(tiny_config("whisper", "llama", generation={"max_new_tokens": 4, "num_beams": 1})).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def pipe(checkpoint):
    return pipeline("automatic-speech-recognition", model=str(checkpoint), trust_remote_code=True, device="cpu")


def test_pipeline_uses_the_saved_remote_code(pipe, checkpoint):
    # Loaded through transformers' dynamic modules from the checkpoint folder, not from our package.
    assert type(pipe).__name__ == "ASRPipeline"
    assert type(pipe.model).__module__.startswith("transformers_modules")


def test_file_formats(pipe, tmp_path):
    audio = tone(1.2)
    for ext in ("wav", "flac", "ogg", "mp3"):
        path = tmp_path / f"clip.{ext}"
        sf.write(path, audio, 16000)
        assert isinstance(pipe(str(path))["text"], str)


def test_array_bytes_and_dict_inputs(pipe, wav_file):
    by_array = pipe(tone(1.5))["text"]
    assert pipe(wav_file.read_bytes())["text"] == pipe(str(wav_file))["text"]
    # 44.1 kHz is resampled to 16 kHz; the same tone at 16 kHz gives the same greedy transcript here.
    assert isinstance(pipe({"raw": tone(1.5, rate=44100), "sampling_rate": 44100})["text"], str)
    assert pipe({"array": tone(1.5), "sampling_rate": 16000})["text"] == by_array


def test_batch_of_files_equals_one_by_one(pipe, tmp_path):
    paths = []
    for i, seconds in enumerate((0.8, 1.9, 1.2)):
        paths.append(str(tmp_path / f"{i}.wav"))
        sf.write(paths[-1], tone(seconds, freq=300 + 200 * i, seed=i), 16000)
    batched = pipe(paths, batch_size=2)
    assert [r["text"] for r in batched] == [pipe(p)["text"] for p in paths]


def test_generation_kwargs(pipe, wav_file):
    short, longer = pipe(str(wav_file), max_new_tokens=1)["text"], pipe(str(wav_file), max_new_tokens=4)["text"]
    assert longer.startswith(short) and len(longer) > len(short)
    out = pipe(str(wav_file), max_new_tokens=3, num_beams=2, length_penalty=0.5)["text"]
    batch = pipe.asr_processor([load_audio(str(wav_file))])
    with pipe._autocast():  # the pipeline computes under the config's autocast dtype
        direct = pipe.model.generate(**batch, max_new_tokens=3, num_beams=2, length_penalty=0.5)
    assert out == pipe.asr_processor.batch_decode(direct)[0]
    with pytest.raises(ValueError, match="unknown argument"):
        pipe(str(wav_file), temperature_typo=3)


def test_long_audio_is_split_not_truncated(pipe):
    long = tone(65.0)
    pieces = split_long_audio(long, 30.0)
    assert len(pieces) == 3 and sum(len(p) for p in pieces) == len(long)
    assert all(len(p) <= 30 * 16000 for p in pieces)
    assert isinstance(pipe(long)["text"], str)


def test_split_prefers_silence():
    audio = tone(40.0)
    audio[27 * 16000 : int(27.3 * 16000)] = 0.0  # a pause inside the search window
    first = split_long_audio(audio, 30.0)[0]
    assert 27.0 <= len(first) / 16000 <= 27.3


@pytest.mark.parametrize(
    "bad,message",
    [
        (np.zeros(0, np.float32), "empty"),
        (np.zeros(16000, np.float32), "silent"),
        (np.full(16000, np.nan, np.float32), "NaN"),
        (b"", "empty"),
        (b"this is not audio at all" * 100, "decode"),
        ({"raw": tone(1.0)}, "sampling_rate"),
        (np.zeros((2, 3, 4)), "shape"),
        ("/no/such/file.wav", "not found"),
    ],
)
def test_bad_input_is_a_clear_value_error(pipe, bad, message):
    with pytest.raises(ValueError, match=message):
        pipe(bad)


def test_corrupt_file(pipe, tmp_path):
    path = tmp_path / "broken.wav"
    buffer = io.BytesIO()
    sf.write(buffer, tone(1.0), 16000, format="WAV")
    path.write_bytes(buffer.getvalue()[:30])  # header cut short
    with pytest.raises(ValueError):
        pipe(str(path))


def test_load_audio_conversions():
    stereo_int = (np.stack([tone(0.5), tone(0.5)], axis=1) * 32767).astype(np.int16)  # (n, 2) int16
    mono = load_audio({"raw": stereo_int, "sampling_rate": 16000})
    assert mono.dtype == np.float32 and mono.ndim == 1 and len(mono) == 8000
    np.testing.assert_allclose(mono, tone(0.5), atol=1e-4)
    channels_first = load_audio(np.stack([tone(0.5), 0.5 * tone(0.5)]))  # (2, n) is averaged too
    np.testing.assert_allclose(channels_first, 0.75 * tone(0.5), atol=1e-6)
    resampled = load_audio({"raw": tone(1.0, rate=8000), "sampling_rate": 8000})
    assert len(resampled) == 16000
