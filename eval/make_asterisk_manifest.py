"""Write a JSONL manifest of Asterisk's recorded English prompts (one real speaker, 8 kHz) for real-speech WER.

    python eval/make_asterisk_manifest.py /tmp/asterisk/manifest.jsonl

Sources: Debian packages asterisk-core-sounds-en-wav (the recordings) and asterisk-core-sounds-en
(core-sounds-en.txt.gz, "name: text" lines; some lines differ from what was recorded).
Prompts named in the reserved list are never written: they are kept for independent measurement.
Only top-level prompts by default (--subfolders adds digits/, letters/, ...); transcripts that are
only a bracketed description ("[this is a simple beep tone]") are left out; "*" and "#" become
"star" and "pound", as the speaker says them. Dev data only: never train on it.
"""

import argparse
import gzip
import json
import os
import re
import sys
from pathlib import Path

SOUNDS = Path("/usr/share/asterisk/sounds/en")
TRANSCRIPTS = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
RESERVED = Path("/work/shared/data/asterisk-prompts-reserved.txt")
REPO = Path(__file__).resolve().parent.parent


def read_transcripts(path: Path) -> dict:
    """{prompt name (with folder, no extension): text} from "name: text" lines; ";" starts a comment."""
    opener = gzip.open if path.suffix == ".gz" else open
    texts = {}
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        for line in f:
            name, sep, text = line.partition(":")
            if line.startswith(";") or not sep or not name.strip():
                continue
            texts[name.strip()] = text.strip()
    return texts


def speakable(text: str) -> str:
    """The words the speaker says: bracketed descriptions dropped, keypad symbols spelled out."""
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = text.replace("*", " star ").replace("#", " pound ")
    return re.sub(r"\s+([.,;:?!])", r"\1", " ".join(text.split()))


def build(sounds: Path, transcripts: Path, reserved: set, subfolders: bool = False) -> list[dict]:
    import soundfile

    entries = []
    for name, text in sorted(read_transcripts(transcripts).items()):
        if name in reserved or name.split("/")[-1] in reserved:
            continue
        if "/" in name and not subfolders:
            continue
        wav, words = sounds / f"{name}.wav", speakable(text)
        if not wav.is_file() or not re.search(r"[A-Za-z0-9]", words):
            continue
        entries.append({"id": name, "audio": str(wav), "text": words, "seconds": round(soundfile.info(str(wav)).duration, 3)})
    return entries


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", type=Path, help="manifest path (outside the repository)")
    parser.add_argument("--sounds", type=Path, default=SOUNDS)
    parser.add_argument("--transcripts", type=Path, default=TRANSCRIPTS)
    parser.add_argument("--reserved", type=Path, default=RESERVED, help="prompt names never to use, one a line")
    parser.add_argument("--subfolders", action="store_true", help="also digits/, letters/, phonetic/, ...")
    args = parser.parse_args(argv)
    output = args.output.resolve()
    if output.is_relative_to(REPO):
        parser.error(f"{output} is inside the repository; write evaluation data elsewhere")
    for path in (args.sounds, args.transcripts, args.reserved):
        if not path.exists():
            parser.error(f"{path} not found (apt-get install asterisk-core-sounds-en-wav asterisk-core-sounds-en; "
                         "--reserved must name the reserved-prompt list)")
    reserved = {line.strip() for line in args.reserved.read_text().splitlines() if line.strip()}
    entries = build(args.sounds, args.transcripts, reserved, args.subfolders)
    output.parent.mkdir(parents=True, exist_ok=True)
    with open(output, "w", encoding="utf-8") as f:
        for entry in entries:
            entry["audio"] = os.path.relpath(entry["audio"], output.parent)  # the manifest format: relative to the manifest
            f.write(json.dumps(entry) + "\n")
    minutes = sum(e["seconds"] for e in entries) / 60
    print(f"{len(entries)} clips, {minutes:.1f} minutes ({len(reserved)} reserved prompts left out) -> {output}", file=sys.stderr)


if __name__ == "__main__":
    main()
