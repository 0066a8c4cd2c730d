"""Training data: sources (JSONL manifest, audio folder, load_from_disk, hub datasets), checks, length-aware batches.

Local sources are read into a list of ``Clip``s; their encoder features can be computed once
and cached (they are frozen), which is most of the CPU recipe's speed. Hub sources stream.
"""

import hashlib
import json
import logging
import math
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from tqdm import tqdm

from tiny_audio.audio import SAMPLE_RATE, load_audio

log = logging.getLogger("train")
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a")
GIGASPEECH_TAGS = {"<COMMA>": ",", "<PERIOD>": ".", "<QUESTIONMARK>": "?", "<EXCLAMATIONPOINT>": "!"}


def clean_transcript(text: str) -> str:
    """The one target policy: keep case and punctuation, map GigaSpeech tags, drop <SIL>-style tags."""
    for tag, mark in GIGASPEECH_TAGS.items():
        text = text.replace(f" {tag}", mark).replace(tag, mark)
    text = re.sub(r"<[A-Z_]+>", " ", text)
    return re.sub(r"\s+", " ", text).strip()


@dataclass
class Clip:
    id: str
    audio: object  # a path, or a dict {"array", "sampling_rate"}
    text: str
    duration: float  # seconds


def read_jsonl(path: str) -> list[Clip]:
    root = Path(path).parent
    clips = []
    with open(path) as f:
        for n, line in enumerate(f):
            if not line.strip():
                continue
            row = json.loads(line)
            audio = row["audio"] if os.path.isabs(row["audio"]) else str(root / row["audio"])
            duration = row.get("duration")
            if duration is None:
                try:
                    duration = sf.info(audio).duration
                except Exception:  # unreadable: counted and skipped by check_clips
                    duration = -1.0
            clips.append(Clip(row.get("id", f"{Path(path).stem}-{n}"), audio, row["text"], float(duration)))
    return clips


def read_audio_folder(path: str) -> list[Clip]:
    """A folder of audio files with metadata.csv (file_name,text) or a .txt transcript beside each file."""
    root = Path(path)
    clips = []
    meta = root / "metadata.csv"
    if meta.exists():
        import csv

        with open(meta) as f:
            for row in csv.DictReader(f):
                audio = str(root / row["file_name"])
                clips.append(Clip(row["file_name"], audio, row.get("text") or row.get("transcription", ""), _duration(audio)))
        return clips
    for audio in sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS):
        txt = audio.with_suffix(".txt")
        if txt.exists():
            clips.append(Clip(audio.stem, str(audio), txt.read_text().strip(), _duration(str(audio))))
    return clips


def read_disk_dataset(path: str, audio_column="audio", text_column="text") -> list[Clip]:
    from datasets import Audio, load_from_disk

    dataset = load_from_disk(path).cast_column(audio_column, Audio(sampling_rate=SAMPLE_RATE))
    clips = []
    for i, row in enumerate(dataset):
        array = row[audio_column]["array"]
        clips.append(Clip(f"disk-{i}", {"array": array, "sampling_rate": SAMPLE_RATE}, row[text_column], len(array) / SAMPLE_RATE))
    return clips


def _duration(path: str) -> float:
    try:
        return sf.info(path).duration
    except Exception:
        return -1.0


def load_source(source: dict, limit: int | None = None) -> list[Clip]:
    """All clips of a local source, or the first ``limit`` of a (streamed) hub source."""
    kind = source["type"]
    path = os.path.expanduser(source.get("path", ""))
    if kind == "jsonl":
        clips = read_jsonl(path)
    elif kind == "audiofolder":
        clips = read_audio_folder(path)
    elif kind == "disk":
        clips = read_disk_dataset(path, source.get("audio_column", "audio"), source.get("text_column", "text"))
    elif kind == "hub":
        import itertools

        clips = list(itertools.islice(stream_hub([source], seed=0), limit))
    else:
        raise ValueError(f"unknown source type {kind!r} (jsonl, audiofolder, disk, hub)")
    return clips[:limit] if limit else clips


def check_clips(clips: list[Clip], max_seconds: float, min_seconds: float = 0.1) -> tuple[list[Clip], dict]:
    """Drop clips that cannot train: unreadable, empty text, too short or too long. Counted, never fatal."""
    kept, skipped = [], {"unreadable": 0, "empty_text": 0, "too_long": 0, "too_short": 0}
    for clip in clips:
        clip.text = clean_transcript(clip.text)
        if clip.duration < 0:
            skipped["unreadable"] += 1
        elif not clip.text:
            skipped["empty_text"] += 1
        elif clip.duration > max_seconds:
            skipped["too_long"] += 1
        elif clip.duration < min_seconds:
            skipped["too_short"] += 1
        else:
            kept.append(clip)
    return kept, skipped


# --- encoder feature cache ----------------------------------------------------------------------
class FeatureCache:
    """Frozen-encoder outputs per clip, stored once as .npy (float16, never pickled)."""

    def __init__(self, folder: str, model, processor, bf16: bool = True):
        self.folder = Path(os.path.expanduser(folder))
        self.folder.mkdir(parents=True, exist_ok=True)
        self.model, self.processor, self.bf16 = model, processor, bf16

    def path(self, clip: Clip) -> Path:
        encoder = self.model.config.encoder_name_or_path  # features of one encoder never serve another
        key = hashlib.sha1(f"{encoder}|{clip.audio}|{clip.id}".encode()).hexdigest()
        return self.folder / f"{key}.npy"

    def is_fresh(self, clip: Clip) -> bool:
        """Features exist and are newer than the audio file (a clip rebuilt under the same id and path
        must not keep the frames of the audio it replaced)."""
        path = self.path(clip)
        if not path.exists():
            return False
        if isinstance(clip.audio, (str, Path)) and os.path.exists(clip.audio):
            return path.stat().st_mtime_ns >= os.stat(clip.audio).st_mtime_ns
        return True

    def build(self, clips: list[Clip], batch_size: int = 16) -> tuple[list[Clip], int]:
        """Encode every clip not cached yet (or cached before its audio last changed); returns the
        clips that have features and the count that failed."""
        todo = list({self.path(c): c for c in clips if not self.is_fresh(c)}.values())  # a clip listed 3x: once
        failed = set()
        todo.sort(key=lambda c: c.duration)  # similar lengths batch together
        for start in tqdm(range(0, len(todo), batch_size), desc="encoder features", disable=not todo):
            group, audio = [], []
            for clip in todo[start : start + batch_size]:
                try:
                    audio.append(load_audio(clip.audio))
                    group.append(clip)
                except ValueError as err:
                    log.warning(f"skipping {clip.id}: {err}")
                    failed.add(clip.id)
            if not group:
                continue
            batch = self.processor.features(audio)
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
                frames, lengths = self.model.encode(batch["input_features"], batch["feature_lengths"])
            for clip, f, n in zip(group, frames, lengths):
                target = self.path(clip)
                tmp = target.with_suffix(".tmp.npy")
                np.save(tmp, f[: int(n)].float().numpy().astype(np.float16))
                tmp.rename(target)
        return [c for c in clips if c.id not in failed], len(failed)

    def load(self, clip: Clip) -> torch.Tensor:
        return torch.from_numpy(np.load(self.path(clip), allow_pickle=False).astype(np.float32))


# --- batching -----------------------------------------------------------------------------------
def length_batches(clips: list[Clip], batch_seconds: float, max_batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Indices grouped so that (longest clip x count) stays within ``batch_seconds`` of audio.

    Clips are shuffled, then sorted by length inside windows of 50 batches' worth, so a batch
    holds similar lengths (little padding) while the order still varies by epoch. Deterministic
    in (seed, epoch): resuming regenerates the same list and skips what was done.
    """
    rng = random.Random(seed * 100_003 + epoch)
    order = list(range(len(clips)))
    rng.shuffle(order)
    window = max_batch_size * 50
    batches = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: clips[i].duration)
        batches += cut_by_budget(chunk, [clips[i].duration for i in chunk], batch_seconds, max_batch_size)
    rng.shuffle(batches)
    return batches


def cut_by_budget(items: list, durations: list[float], batch_seconds: float, max_batch_size: int) -> list[list]:
    """Cut length-sorted items into batches whose padded audio (longest x count) fits the budget."""
    batches, current, longest = [], [], 0.0
    for item, duration in zip(items, durations):
        if current and (max(longest, duration) * (len(current) + 1) > batch_seconds or len(current) >= max_batch_size):
            batches.append(current)
            current, longest = [], 0.0
        current.append(item)
        longest = max(longest, duration)
    if current:
        batches.append(current)
    return batches


def steps_per_epoch(clips, batch_seconds, max_batch_size, seed) -> int:
    return len(length_batches(clips, batch_seconds, max_batch_size, seed, 0))


def collate_cached(clips: list[Clip], cache: FeatureCache, processor, k: int) -> dict:
    """A training batch from cached encoder frames: padded frames + prompt/transcript ids."""
    frames = [cache.load(c) for c in clips]
    lengths = torch.tensor([f.shape[0] for f in frames])
    padded = torch.zeros(len(frames), int(lengths.max()), frames[0].shape[1])
    for i, f in enumerate(frames):
        padded[i, : f.shape[0]] = f
    batch = processor.token_batch([math.ceil(int(n) / k) for n in lengths], [c.text for c in clips])
    batch.update(encoder_frames=padded, frame_lengths=lengths)
    return batch


def mask_frames(frames: torch.Tensor, lengths: torch.Tensor, generator: torch.Generator,
                time_masks: int = 2, max_time: int = 10, channel_masks: int = 2, max_channels: int = 40) -> torch.Tensor:
    """SpecAugment on cached encoder frames: zero a few time spans and channel bands per clip.

    Cached features are identical every epoch; masking makes each pass a little different so the
    projector cannot memorize a small corpus (seeded: a resumed run masks the same way).
    """
    frames = frames.clone()
    for i, n in enumerate(lengths.tolist()):
        for _ in range(time_masks):
            width = int(torch.randint(0, max_time + 1, (1,), generator=generator))
            start = int(torch.randint(0, max(1, n - width), (1,), generator=generator))
            frames[i, start : start + width] = 0
        for _ in range(channel_masks):
            width = int(torch.randint(0, min(max_channels, frames.shape[2]) + 1, (1,), generator=generator))
            start = int(torch.randint(0, frames.shape[2] - width + 1, (1,), generator=generator))
            frames[i, :, start : start + width] = 0
    return frames


def collate_audio(clips: list[Clip], processor) -> dict:
    """A training batch from raw audio (the encoder runs every step: for streamed or augmented data)."""
    audio = [load_audio(c.audio) for c in clips]
    return dict(processor(audio, text=[c.text for c in clips]))


# --- hub datasets (the full recipe) ------------------------------------------------------------
def stream_hub(sources: list[dict], seed: int):
    """Interleave streamed hub datasets with the given weights; yields Clips (decoded at 16 kHz)."""
    from datasets import Audio, interleave_datasets, load_dataset

    streams, weights = [], []
    for src in sources:
        ds = load_dataset(src["name"], src.get("config"), split=src.get("split", "train"), streaming=True)
        ds = ds.cast_column(src.get("audio_column", "audio"), Audio(sampling_rate=SAMPLE_RATE))
        text_column = src.get("text_column", "text")
        ds = ds.map(lambda row, c=text_column: {"text": row[c]})
        ds = ds.select_columns([src.get("audio_column", "audio"), "text"]).rename_column(src.get("audio_column", "audio"), "audio")
        streams.append(ds)
        weights.append(src.get("weight", 1.0))
    total = sum(weights)
    mixed = interleave_datasets(streams, probabilities=[w / total for w in weights], seed=seed, stopping_strategy="all_exhausted")
    for i, row in enumerate(mixed):
        array = row["audio"]["array"]
        yield Clip(f"hub-{i}", {"array": array, "sampling_rate": SAMPLE_RATE}, row["text"], len(array) / SAMPLE_RATE)


def stream_batches(clips_iter, batch_seconds: float, max_batch_size: int, max_seconds: float, skipped: dict, buffer: int = 2000):
    """Length-aware batches from a stream: fill a buffer, sort it by length, cut by the budget."""
    pending = []

    def flush(items):
        items.sort(key=lambda c: c.duration)
        yield from cut_by_budget(items, [c.duration for c in items], batch_seconds, max_batch_size)

    for clip in clips_iter:
        kept, counts = check_clips([clip], max_seconds)
        for key, value in counts.items():
            skipped[key] = skipped.get(key, 0) + value
        pending.extend(kept)
        if len(pending) >= buffer:
            yield from flush(pending)
            pending = []
    yield from flush(pending)
