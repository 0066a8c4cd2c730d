"""Evaluation sets as (id, audio, text) samples in a fixed order: named hub test sets, JSONL manifests, audio folders.

- A named set (``HUB_SETS``) streams from the Hugging Face hub with ``datasets``; audio stays
  encoded (``Audio(decode=False)``) and is decoded by ``tiny_audio.load_audio`` like any file.
- A manifest is a ``.jsonl`` file, one object per line: ``{"audio": path relative to the
  manifest (or absolute), "text": reference}``, optionally ``"id"``; other keys are ignored.
- An audio folder holds ``metadata.jsonl`` or ``metadata.csv`` (the ``datasets`` audiofolder
  layout): a ``file_name`` column and a text column (``text``, ``transcription``, ``sentence``
  or ``transcript``).
"""

import csv
import hashlib
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator


@dataclass
class Sample:
    id: str
    text: str
    audio: str | bytes  # a file path or the encoded file's bytes
    where: str  # for messages: the file or the hub row it came from


@dataclass(frozen=True)
class HubSet:
    path: str
    config: str
    splits: dict  # our split name -> the hub's
    audio_column: str
    text_column: str


HUB_SETS = {
    # The seed project's benchmark (~2,000 and ~500 samples in its table); audio lives in "wav".
    "loquacious-large": HubSet("speechbrain/LoquaciousSet", "large", {"test": "test", "dev": "dev"}, "wav", "text"),
    "loquacious-clean": HubSet("speechbrain/LoquaciousSet", "clean", {"test": "test", "dev": "dev"}, "wav", "text"),
    "librispeech-clean": HubSet("openslr/librispeech_asr", "all", {"test": "test.clean", "dev": "validation.clean"}, "audio", "text"),
    "librispeech-other": HubSet("openslr/librispeech_asr", "all", {"test": "test.other", "dev": "validation.other"}, "audio", "text"),
}
ID_COLUMNS = ("id", "ID", "utt_id")  # the first one a hub row has names the sample
TEXT_COLUMNS = ("text", "transcription", "sentence", "transcript")  # audio-folder metadata


@dataclass
class Dataset:
    name: str  # what the user typed
    version: str  # manifest sha256 prefix, or hub path:config:split
    samples: Iterator[Sample]


def open_dataset(name: str, split: str = "test", max_samples: int | None = None) -> Dataset:
    """A named hub set, a ``.jsonl`` manifest or an audio folder; the first ``max_samples`` samples in file order."""
    if name in HUB_SETS:
        spec = HUB_SETS[name]
        hub_split = spec.splits.get(split, split)
        samples = stream_hub(spec.path, spec.config, hub_split, spec.audio_column, spec.text_column)
        version = f"{spec.path}:{spec.config}:{hub_split}"
    else:
        path = Path(name)
        if path.is_dir():
            samples, metadata = read_audio_folder(path), _metadata_file(path)
        elif path.is_file():
            samples, metadata = read_manifest(path), path
        else:
            raise ValueError(f"dataset {name!r} is neither a named set ({', '.join(HUB_SETS)}) nor a manifest file or folder")
        version = "sha256:" + hashlib.sha256(metadata.read_bytes()).hexdigest()[:12]
    return Dataset(name, version, itertools.islice(samples, max_samples))


def read_manifest(path: Path) -> Iterator[Sample]:
    path = Path(path)
    with open(path, encoding="utf-8") as f:
        for line_number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                audio, text = entry["audio"], entry["text"]
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise ValueError(f"{path}:{line_number}: expected a JSON object with \"audio\" and \"text\" ({err})") from err
            file = path.parent / audio
            yield Sample(str(entry.get("id", Path(audio).stem)), text, str(file), str(file))


def _metadata_file(folder: Path) -> Path:
    for name in ("metadata.jsonl", "metadata.csv"):
        if (folder / name).is_file():
            return folder / name
    raise ValueError(f"audio folder {folder} has no metadata.jsonl or metadata.csv")


def read_audio_folder(folder: Path) -> Iterator[Sample]:
    metadata = _metadata_file(folder)
    with open(metadata, encoding="utf-8", newline="") as f:
        rows = [json.loads(line) for line in f if line.strip()] if metadata.suffix == ".jsonl" else list(csv.DictReader(f))
    for row_number, row in enumerate(rows, 1):
        column = next((c for c in TEXT_COLUMNS if c in row), None)
        if "file_name" not in row or column is None:
            raise ValueError(f"{metadata} row {row_number}: needs file_name and one of {TEXT_COLUMNS}, has {sorted(row)}")
        file = folder / row["file_name"]
        yield Sample(str(row.get("id", Path(row["file_name"]).stem)), row[column], str(file), str(file))


def stream_hub(path: str, config: str | None, split: str, audio_column: str, text_column: str, **load_kwargs) -> Iterator[Sample]:
    """Stream a hub (or any ``datasets`` builder's) split in its stored order; audio stays encoded."""
    import datasets

    rows = datasets.load_dataset(path, config, split=split, streaming=True, **load_kwargs)
    rows = rows.cast_column(audio_column, datasets.Audio(decode=False))  # {"bytes", "path"}: no torchcodec needed
    for index, row in enumerate(rows):
        audio = row[audio_column]
        key = next((row[c] for c in ID_COLUMNS if row.get(c) is not None), index)
        where = f"{path}:{split}[{index}]"
        yield Sample(str(key), row[text_column], audio["bytes"] or audio["path"] or "", where)
