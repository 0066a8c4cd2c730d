"""Rebuild the bundled sample clips: espeak-ng speech of known sentences, 16 kHz mono 16-bit FLAC, plus metadata.jsonl.

    python assets/samples/make_samples.py

metadata.jsonl follows the ``datasets`` audiofolder layout (``file_name``, ``text``), so the folder
is also an evaluation set: ``python eval/eval.py --dataset assets/samples``.
"""

import json
import subprocess
import sys
from pathlib import Path

import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root, for tiny_audio without an install
from tiny_audio import SAMPLE_RATE, load_audio

HERE = Path(__file__).resolve().parent
SAMPLES = [  # (file name, espeak-ng voice, sentence)
    ("fox.flac", "en-us", "The quick brown fox jumps over the lazy dog."),
    ("callback.flac", "en-gb", "Please call me back tomorrow morning."),
    ("umbrella.flac", "en-us+f3", "It is raining in the city, so take an umbrella."),
    ("station.flac", "en-us+m3", "Turn left at the next light and park near the station."),
    ("numbers.flac", "en-gb+f2", "My train leaves at seven, not eleven."),
]


def main() -> None:
    rows = []
    for name, voice, text in SAMPLES:
        wav = subprocess.run(["espeak-ng", "-v", voice, "--stdout", text], check=True, capture_output=True).stdout
        audio = load_audio(wav)  # espeak-ng writes 22.05 kHz; decoded and resampled to 16 kHz mono, never normalized
        sf.write(HERE / name, audio, SAMPLE_RATE, subtype="PCM_16")
        rows.append({"file_name": name, "text": text})
    with open(HERE / "metadata.jsonl", "w") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)


if __name__ == "__main__":
    main()
