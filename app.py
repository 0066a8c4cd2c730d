"""Tiny Audio web app: transcribe from the microphone or uploaded files, and score transcripts against references.

    python app.py                                             # the default model on http://127.0.0.1:7860
    python app.py --model path/or/hub-id --host 0.0.0.0 --port 8080

Named API endpoints for gradio_client: /transcribe, /transcribe_batch, /evaluate, /benchmark, /load_sample.
"""

import argparse
import csv
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no usage pings: the app runs offline

import spaces  # ZeroGPU on Hugging Face Spaces; elsewhere spaces.GPU returns the function unchanged

import gradio as gr
import numpy as np
import pandas as pd
import torch
from transformers import pipeline

import tiny_audio
from eval.metrics import align, normalize, rtfx, wer
from tiny_audio import SAMPLE_RATE, load_audio
from tiny_audio.audio import split_long_audio
from tiny_audio.presets import PRESETS

ROOT = Path(__file__).resolve().parent
SAMPLES_DIR = ROOT / "assets" / "samples"  # espeak-ng clips of known sentences + metadata.jsonl
MAX_AUDIO_SECONDS = 600  # per clip: 10 min of speech already takes minutes on a CPU
MAX_FILE_MB = 50  # per uploaded file; the server refuses larger uploads before they reach us
MAX_FILES = 20  # per batch
CONCURRENCY_LIMIT = 2  # model calls at once, across all endpoints; the rest wait in the queue
QUEUE_SIZE = 32  # waiting requests beyond this are turned away ("queue is full")
AUDIO_TYPES = [".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".webm", ".aac"]  # what the Upload tab offers
ALIGNMENT_COLORS = {"substitution": "#f59e0b", "insertion": "#22c55e", "deletion": "#ef4444"}
RESULTS_TTL = 3600  # seconds that a batch's downloadable results (and gradio's cached uploads) are kept


# --- pure helpers ------------------------------------------------------------------------
def read_samples(folder: Path = SAMPLES_DIR) -> dict[str, tuple[str, str]]:
    """Bundled samples: {file name: (path, reference text)} from the folder's metadata.jsonl."""
    samples = {}
    with open(folder / "metadata.jsonl") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                samples[row["file_name"]] = (str(folder / row["file_name"]), row["text"])
    return samples


def preset_name(config) -> str:
    towers = (config.encoder_name_or_path, config.decoder_name_or_path)
    for name, preset in PRESETS.items():
        if towers == (preset["encoder_name_or_path"], preset["decoder_name_or_path"]):
            return name
    return "custom"


def duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.3g} min"


def percent(fraction: float) -> str:
    return f"{100 * fraction:.1f} %"


def model_info(model: str, pipe) -> str:
    """Markdown: checkpoint, preset and towers, parameter counts, device; how long audio is handled; limits."""
    config, counts = pipe.model.config, pipe.model.parameter_counts()
    millions = {part: f"{n / 1e6:.1f} M" for part, n in counts.items()}
    window = pipe.asr_processor.max_seconds
    long_audio = (
        f"Recordings longer than the encoder's {window:.0f} s window are split at quiet points and "
        "transcribed piece by piece, not truncated."
        if window
        else "The encoder takes recordings of any length in one piece."
    )
    ctc_head = (f" · CTC projector for joint decoding (trained, {millions['ctc_projector']})"
                if counts.get("ctc_projector") else "")
    return (
        f"**Model** `{model}` · preset **{preset_name(config)}**: `{config.encoder_name_or_path}` "
        f"(frozen, {millions['encoder']}) → projector (trained, {millions['projector']}) → "
        f"`{config.decoder_name_or_path}` (frozen, {millions['decoder']}){ctc_head} · device **{pipe.device}**\n\n"
        f"{long_audio} Limits: {duration(MAX_AUDIO_SECONDS)} of audio and {MAX_FILE_MB} MB per file, "
        f"{MAX_FILES} files per batch."
    )


def user_error(message: str) -> gr.Error:
    """An error the page and gradio_client show as is; no traceback in the server log (it is the input's fault)."""
    return gr.Error(message, print_exception=False)


def read_clip(path, max_seconds: float = MAX_AUDIO_SECONDS) -> tuple[str, np.ndarray]:
    """(file name, 16 kHz samples) of an uploaded or recorded file; gr.Error saying what is wrong otherwise."""
    if not path:
        raise user_error("No audio: record a clip or choose a file first.")
    name = os.path.basename(path)
    size_mb = os.path.getsize(path) / 2**20 if os.path.isfile(path) else 0
    if size_mb > MAX_FILE_MB:
        raise user_error(f"{name}: file is {size_mb:.3g} MB, above this app's {MAX_FILE_MB:g} MB limit.")
    try:
        audio = load_audio(path)
    except ValueError as err:
        raise user_error(f"{name}: {err}.") from err
    seconds = len(audio) / SAMPLE_RATE
    if seconds > max_seconds:
        raise user_error(f"{name}: audio is {duration(seconds)} long, above this app's {duration(max_seconds)} limit.")
    return name, audio


def generation_settings(num_beams, max_new_tokens, length_penalty) -> dict:
    # Sliders arrive as floats (and as whatever a gradio_client caller sends).
    return {"num_beams": int(num_beams), "max_new_tokens": int(max_new_tokens), "length_penalty": float(length_penalty)}


def alignment_spans(ref: str, hyp: str) -> list[tuple[str, str | None]]:
    """Word alignment as gr.HighlightedText spans: matches plain, errors labelled (a substitution as ref → hyp)."""
    spans = []
    for op, ref_word, hyp_word in align(ref, hyp):
        if spans:
            spans.append((" ", None))
        if op == "equal":
            spans.append((ref_word, None))
        elif op == "substitute":
            spans.append((f"{ref_word} → {hyp_word}", "substitution"))
        elif op == "insert":
            spans.append((hyp_word, "insertion"))
        else:
            spans.append((ref_word, "deletion"))
    return spans


def write_results(rows: list[dict], folder: Path) -> list[str]:
    """results.txt (file <tab> transcript, one a line), results.csv and results.json in ``folder``."""
    txt, csv_path, json_path = folder / "results.txt", folder / "results.csv", folder / "results.json"
    txt.write_text("".join(f"{row['file']}\t{' '.join(row['text'].split())}\n" for row in rows))
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    json_path.write_text(json.dumps(rows, indent=2, ensure_ascii=False))
    return [str(txt), str(csv_path), str(json_path)]


def fresh_folder(root: Path) -> Path:
    """A new folder under ``root``, after removing those older than RESULTS_TTL."""
    for old in root.iterdir():
        if time.time() - old.stat().st_mtime > RESULTS_TTL:
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(dir=root))


# --- the app ---------------------------------------------------------------------------------
def build_demo(
    model: str = tiny_audio.DEFAULT_MODEL, device: str | None = None, max_seconds: float = MAX_AUDIO_SECONDS
) -> gr.Blocks:
    """The app for one checkpoint (folder or hub id), queued; the model loads here, once, never at import."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    pipe = pipeline("automatic-speech-recognition", model=model, trust_remote_code=True, device=device)
    defaults = pipe.model.config.generation  # the sliders start at the model's own generation settings
    window = pipe.asr_processor.max_seconds
    samples = read_samples()
    results_root = Path(tempfile.mkdtemp(prefix="tiny-audio-results-"))
    gr.set_static_paths([SAMPLES_DIR])  # the Evaluation tab hands bundled clips to the page straight from assets/

    @spaces.GPU(duration=120)
    def recognize(clips: list[np.ndarray], settings: dict) -> list[tuple[str, float]]:
        """(transcript, compute seconds) per clip; the pipeline splits long clips."""
        out = []
        for clip in clips:
            start = time.perf_counter()
            try:
                text = pipe(clip, **settings)["text"]
            except ValueError as err:  # e.g. a clip too short to give one audio token
                raise user_error(str(err)) from err
            out.append((text, time.perf_counter() - start))
        return out

    def timing(audio: np.ndarray, compute_seconds: float) -> str:
        seconds = len(audio) / SAMPLE_RATE
        note = f"{seconds:.1f} s of audio in {compute_seconds:.2f} s ({rtfx(seconds, compute_seconds):.1f}× real time)"
        if window and seconds > window:
            pieces = len(split_long_audio(audio, window))
            note += f"; longer than the {window:.0f} s window, so transcribed in {pieces} pieces"
        return note

    def transcribe(audio, num_beams, max_new_tokens, length_penalty):
        _, clip = read_clip(audio, max_seconds)
        [(text, compute)] = recognize([clip], generation_settings(num_beams, max_new_tokens, length_penalty))
        return text, timing(clip, compute)

    def transcribe_batch(files, num_beams, max_new_tokens, length_penalty):
        if not files:
            raise user_error("No files: choose one or more audio files first.")
        if len(files) > MAX_FILES:
            raise user_error(f"{len(files)} files: at most {MAX_FILES} per batch.")
        clips, problems = [], []
        for path in files:  # check every file before any model work, and report all the bad ones at once
            try:
                clips.append(read_clip(path, max_seconds))
            except gr.Error as err:
                problems.append(err.message)
        if problems:
            raise user_error(f"{len(problems)} of {len(files)} files can't be transcribed: " + " ".join(problems))
        results = recognize([clip for _, clip in clips], generation_settings(num_beams, max_new_tokens, length_penalty))
        rows = [
            {"file": name, "duration (s)": round(len(clip) / SAMPLE_RATE, 2), "text": text,
             "seconds": round(compute, 2)}
            for (name, clip), (text, compute) in zip(clips, results)
        ]
        return pd.DataFrame(rows), write_results(rows, fresh_folder(results_root))

    def evaluate(audio, reference, num_beams, max_new_tokens, length_penalty):
        if not reference or not normalize(reference):
            raise user_error("No reference: type what is said in the clip, or pick a bundled sample.")
        _, clip = read_clip(audio, max_seconds)
        [(text, compute)] = recognize([clip], generation_settings(num_beams, max_new_tokens, length_penalty))
        scores = wer(reference, text)
        words = scores["hits"] + scores["substitutions"] + scores["deletions"]
        summary = (
            f"**WER {percent(scores['wer'])}** · CER {percent(scores['cer'])} · {scores['substitutions']} substituted, "
            f"{scores['insertions']} inserted, {scores['deletions']} deleted of {words} reference words "
            f"(Whisper-normalized) · {timing(clip, compute)}"
        )
        return text, summary, alignment_spans(reference, text), scores

    def benchmark(num_beams, max_new_tokens, length_penalty):
        names = list(samples)
        clips = [read_clip(samples[name][0])[1] for name in names]
        results = recognize(clips, generation_settings(num_beams, max_new_tokens, length_penalty))
        references, hypotheses = [samples[name][1] for name in names], [text for text, _ in results]
        rows = []
        for name, ref, (hyp, compute) in zip(names, references, results):
            scores = wer(ref, hyp)
            rows.append({"sample": name, "reference": ref, "transcript": hyp, "WER %": round(100 * scores["wer"], 1),
                         "CER %": round(100 * scores["cer"], 1), "seconds": round(compute, 2)})
        total = wer(references, hypotheses)
        audio_seconds = sum(len(clip) for clip in clips) / SAMPLE_RATE
        compute_seconds = sum(compute for _, compute in results)
        summary = (
            f"**{len(names)} samples: WER {percent(total['wer'])} · CER {percent(total['cer'])}** (corpus-level, "
            f"Whisper-normalized) · {audio_seconds:.1f} s of audio in {compute_seconds:.1f} s, "
            f"RTFx {rtfx(audio_seconds, compute_seconds):.1f}"
        )
        table = pd.DataFrame(rows)
        return summary, table, table[["sample", "WER %"]]

    def load_sample(name):
        if name not in samples:
            raise user_error(f"No bundled sample named {name!r}; choose one of {', '.join(samples)}.")
        return samples[name]

    model_call = {"concurrency_id": "model", "concurrency_limit": CONCURRENCY_LIMIT}  # one limit across endpoints

    with gr.Blocks(title="Tiny Audio", delete_cache=(RESULTS_TTL, RESULTS_TTL)) as demo:
        gr.Markdown("# Tiny Audio\nA small speech recognizer: frozen Whisper encoder → trained projector → frozen LLM.")
        gr.Markdown(model_info(model, pipe))
        with gr.Accordion("Settings (all tabs)", open=False):
            with gr.Row():
                beams = gr.Slider(1, 8, value=defaults["num_beams"], step=1, label="Beams", info="1 = greedy, fastest")
                tokens = gr.Slider(1, 512, value=defaults["max_new_tokens"], step=1, label="Max new tokens",
                                   info=f"per piece of up to {window:.0f} s" if window else None)
                penalty = gr.Slider(0.0, 2.0, value=defaults["length_penalty"], step=0.1, label="Length penalty",
                                    info="beam search only; > 1 favours longer transcripts")
        settings = [beams, tokens, penalty]

        with gr.Tabs():
            with gr.Tab("Microphone", id="microphone", elem_id="microphone"):
                recorder = gr.Audio(sources=["microphone"], type="filepath", label="Record", elem_id="recorder")
                mic_button = gr.Button("Transcribe", variant="primary")
                transcript = gr.Textbox(label="Transcript", lines=3, buttons=["copy"], elem_id="transcript")
                mic_timing = gr.Markdown(label="timing", elem_id="timing")
                mic_button.click(transcribe, [recorder, *settings], [transcript, mic_timing], api_name="transcribe",
                                 **model_call)

            with gr.Tab("Upload", id="upload", elem_id="upload"):
                files = gr.File(file_count="multiple", file_types=AUDIO_TYPES, elem_id="audio-files",
                                label="Audio files (wav, flac, mp3, ogg, m4a, webm)")
                files_button = gr.Button("Transcribe all", variant="primary")
                table = gr.Dataframe(headers=["file", "duration (s)", "text", "seconds"], label="Results", wrap=True,
                                     interactive=False, elem_id="results")
                downloads = gr.File(label="Download results (txt, CSV, JSON)", file_count="multiple", interactive=False)
                files_button.click(transcribe_batch, [files, *settings], [table, downloads],
                                   api_name="transcribe_batch", **model_call)

            with gr.Tab("Evaluation", id="evaluation", elem_id="evaluation"):
                with gr.Row():
                    with gr.Column():
                        sample = gr.Dropdown(list(samples), value=None, label="Bundled sample",
                                             info="fills in the audio and its reference")
                        eval_audio = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Audio")
                        reference = gr.Textbox(label="Reference transcript", lines=2, elem_id="reference")
                        eval_button = gr.Button("Transcribe and score", variant="primary")
                    with gr.Column():
                        hypothesis = gr.Textbox(label="Transcript", lines=2, elem_id="hypothesis")
                        score = gr.Markdown(label="summary", elem_id="score")
                        alignment = gr.HighlightedText(label="Differences from the reference", show_legend=True,
                                                       color_map=ALIGNMENT_COLORS)
                        scores = gr.JSON(label="Scores")
                sample.change(load_sample, sample, [eval_audio, reference], api_name="load_sample", queue=False)
                eval_button.click(evaluate, [eval_audio, reference, *settings], [hypothesis, score, alignment, scores],
                                  api_name="evaluate", **model_call)

                gr.Markdown(f"### Benchmark\nTranscribe and score all {len(samples)} bundled samples.")
                bench_button = gr.Button("Run benchmark")
                bench_summary = gr.Markdown(label="summary", elem_id="benchmark-summary")
                bench_table = gr.Dataframe(label="Per sample", wrap=True, interactive=False)
                bench_plot = gr.BarPlot(x="sample", y="WER %", title="WER per sample", y_lim=[0, None], height=260)
                bench_button.click(benchmark, settings, [bench_summary, bench_table, bench_plot], api_name="benchmark",
                                   **model_call)
    return demo.queue(default_concurrency_limit=CONCURRENCY_LIMIT, max_size=QUEUE_SIZE)


def serve(demo: gr.Blocks, host: str = "127.0.0.1", port: int = 7860, **kwargs):
    """Launch with this app's upload limit, and never a public share link."""
    return demo.launch(server_name=host, server_port=port, share=False, max_file_size=f"{MAX_FILE_MB}mb", **kwargs)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=tiny_audio.DEFAULT_MODEL, help="checkpoint folder or hub id")
    # Hugging Face Spaces set GRADIO_SERVER_NAME/_PORT: as the defaults, a Space needs no flags.
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                        help="address to listen on; 0.0.0.0 serves the local network (default: %(default)s)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    args = parser.parse_args(argv)
    serve(build_demo(args.model, args.device), args.host, args.port)


if __name__ == "__main__":
    main()
