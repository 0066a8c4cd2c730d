"""Evaluate a speech recognizer on a test set: WER/CER as the Open ASR Leaderboard scores them, and RTFx.

    python eval/eval.py --dataset manifest.jsonl --max-samples 20
    python eval/eval.py --provider faster-whisper --dataset librispeech-clean --batch-size 8
    python eval/eval.py --compare runs/eval/a runs/eval/b [--exclude-first 50]

Writes predictions.jsonl, summary.json and summary.md into --output-dir. RTFx = audio seconds /
compute seconds over the timed transcription calls; model loading and the warm-up batch are
excluded (the leaderboard's definition), the batch size is recorded with it.
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import yaml

if __package__ in (None, ""):  # run as a script: the repo root goes first, so `eval` is this package, not this file
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from eval.data import HUB_SETS, Sample, open_dataset
from eval.metrics import frequent_errors, normalize, paired_bootstrap, rtfx, wer, wer_by_duration
from eval.providers import PROVIDERS, ClipErrors, make_provider

ROOT = Path(__file__).resolve().parent.parent
WORST = 10  # utterances listed in summary.md
TOP_ERRORS = 15  # most frequent word errors listed in summary.md


def batches(samples, size: int):
    batch = []
    for sample in samples:
        batch.append(sample)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def scorable_audio(sample: Sample):
    """The sample's 16 kHz audio; ValueError / OSError when it cannot be scored (empty reference, unreadable audio)."""
    if not normalize(sample.text or ""):
        raise ValueError("reference is empty after normalization (nothing to score)")
    from tiny_audio import load_audio  # imported where used, as evaluate does

    return load_audio(sample.audio)


def evaluate(provider, samples, batch_size: int = 1, total: int | None = None) -> dict:
    """Transcribe and score every readable sample; unreadable or failed ones are skipped and listed.

    Returns {"predictions": [...], "skipped": [...], "audio_seconds", "compute_seconds"}.
    """
    from tqdm import tqdm

    from tiny_audio import SAMPLE_RATE

    predictions, skipped = [], []
    audio_seconds = compute_seconds = 0.0
    warm = not provider.warmup
    progress = tqdm(total=total, unit="clip", desc=f"{provider.name}", disable=None)
    for batch in batches(samples, batch_size):
        clips = []  # (sample, 16 kHz audio)
        for sample in batch:
            try:
                clips.append((sample, scorable_audio(sample)))
            except (ValueError, OSError) as err:
                skipped.append({"id": sample.id, "audio": sample.where, "reason": str(err)})
        if not clips:
            progress.update(len(batch))
            continue
        audio = [clip for _, clip in clips]
        if not warm:  # the first batch once, untimed: lazy initialization and allocations
            try:
                provider.transcribe(audio)
            except ClipErrors:
                pass
            warm = True
        start = time.perf_counter()
        try:
            texts, errors = provider.transcribe(audio), {}
        except ClipErrors as err:
            texts, errors = err.texts, err.errors
        compute_seconds += time.perf_counter() - start
        for i, (sample, clip) in enumerate(clips):
            if i in errors:
                skipped.append({"id": sample.id, "audio": sample.where, "reason": f"{provider.name}: {errors[i]}"})
                continue
            audio_seconds += len(clip) / SAMPLE_RATE
            predictions.append(_prediction(sample, texts[i], len(clip) / SAMPLE_RATE))
        progress.update(len(batch))
        progress.set_postfix(skipped=len(skipped))
    progress.close()
    return {"predictions": predictions, "skipped": skipped, "audio_seconds": audio_seconds, "compute_seconds": compute_seconds}


def _prediction(sample: Sample, hypothesis: str, seconds: float) -> dict:
    scores = wer([sample.text], [hypothesis])
    return {
        "id": sample.id,
        "audio": sample.where,
        "reference": sample.text,
        "hypothesis": hypothesis,
        "reference_normalized": normalize(sample.text),
        "hypothesis_normalized": normalize(hypothesis),
        "audio_seconds": round(seconds, 3),
        **{k: scores[k] for k in ("substitutions", "insertions", "deletions", "hits", "wer", "cer")},
    }


def summarize(run: dict, meta: dict) -> dict:
    """summary.json: corpus scores, counts, timing and what was run."""
    predictions = run["predictions"]
    if not predictions:
        raise ValueError(f"no sample could be transcribed ({len(run['skipped'])} skipped); nothing to score")
    scores = wer([p["reference"] for p in predictions], [p["hypothesis"] for p in predictions])
    return {
        **scores,
        "num_samples": len(predictions),
        "num_skipped": len(run["skipped"]),
        "audio_seconds": round(run["audio_seconds"], 3),
        "compute_seconds": round(run["compute_seconds"], 6),
        "rtfx": round(rtfx(run["audio_seconds"], run["compute_seconds"]), 3),
        **meta,
        "skipped": run["skipped"],
    }


def model_version(model: str | None, provider) -> str:
    """Weights' sha256 prefix for a local folder; the hub commit when transformers reports one; a service's model."""
    from tiny_audio.weights import sha256_file

    folder = Path(model) if model else None
    if folder and folder.is_dir():
        for name in ("model.safetensors", "model.bin", "pytorch_model.bin"):
            if (folder / name).is_file():
                return f"sha256:{sha256_file(folder / name)[:12]}"
    pipe = getattr(provider, "pipe", None)
    commit = getattr(getattr(getattr(pipe, "model", None), "config", None), "_commit_hash", None)
    service_model = provider.versions.get("speech_model_used")
    return f"hub:{commit}" if commit else f"service:{service_model}" if service_model else "unknown"


def run_metadata(args, provider, dataset) -> dict:
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = ""
    return {
        "provider": provider.name,
        "provider_version": provider.versions,
        "model": provider.model,
        "model_version": model_version(provider.model, provider),
        "dataset": dataset.name,
        "dataset_version": dataset.version,
        "split": args.split,
        "max_samples": args.max_samples,
        "batch_size": args.batch_size,
        "num_beams": provider.num_beams,
        "generate": getattr(args, "generate", None) or None,
        "device": args.device,
        "cpu_threads": len(os.sched_getaffinity(0)),
        "machine": f"{platform.machine()} {platform.processor() or platform.system()}",
        "tiny_audio_commit": commit or None,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ") or "∅"


def markdown_summary(summary: dict, predictions: list[dict], worst: int = WORST) -> str:
    s = summary
    lines = [
        f"# {s['provider']} · {s['model']} · {s['dataset']} ({s['split']})",
        "",
        "| WER | CER | WER unnormalized | sub | ins | del | samples | skipped | audio s | compute s | RTFx | batch | beams |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        f"| {s['wer']:.2%} | {s['cer']:.2%} | {s['wer_unnormalized']:.2%} | {s['substitutions']} | {s['insertions']} "
        f"| {s['deletions']} | {s['num_samples']} | {s['num_skipped']} | {s['audio_seconds']:.1f} | {s['compute_seconds']:.1f} "
        f"| {s['rtfx']:.2f} | {s['batch_size']} | {s['num_beams']} |",
        "",
        f"Scored after Whisper's English normalizer; model {s['model_version']}, dataset {s['dataset_version']}, {s['date']}.",
        "",
        f"## Worst {min(worst, len(predictions))} utterances (by word errors)",
        "",
        "| id | errors | WER | reference (normalized) | hypothesis (normalized) |",
        "|---|---|---|---|---|",
    ]
    ranked = sorted(predictions, key=lambda p: (p["substitutions"] + p["insertions"] + p["deletions"], p["wer"]), reverse=True)
    for p in ranked[:worst]:
        errors = p["substitutions"] + p["insertions"] + p["deletions"]
        lines.append(f"| {_cell(p['id'])} | {errors} | {p['wer']:.0%} | {_cell(p['reference_normalized'])} | {_cell(p['hypothesis_normalized'])} |")
    lines += ["", "## WER by clip length", "", "| seconds | clips | words | errors | WER |", "|---|---|---|---|---|"]
    for band in wer_by_duration(predictions):
        span = f"{band['low']:g}-{band['high']:g}" if band["high"] != float("inf") else f">= {band['low']:g}"
        rate = "–" if band["wer"] is None else f"{band['wer']:.1%}"
        lines.append(f"| {span} | {band['clips']} | {band['words']} | {band['errors']} | {rate} |")
    pairs = [(p["reference"], p["hypothesis"]) for p in predictions]
    lines += ["", "## Most frequent word errors", "", "| error | reference | hypothesis | count |", "|---|---|---|---|"]
    lines += [f"| {op} | {_cell(r or '')} | {_cell(h or '')} | {n} |" for op, r, h, n in frequent_errors(pairs, TOP_ERRORS)]
    if s["skipped"]:
        lines += ["", f"## Skipped ({len(s['skipped'])})", ""]
        lines += [f"- `{item['id']}` ({item['audio']}): {item['reason']}" for item in s["skipped"]]
    return "\n".join(lines) + "\n"


def write_results(output_dir: Path, summary: dict, predictions: list[dict]) -> None:
    """predictions.jsonl and summary.json: what --compare reads (eval/ctc_best_path.py writes these too)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    with open(output_dir / "predictions.jsonl", "w", encoding="utf-8") as f:
        for p in predictions:
            f.write(json.dumps(p, ensure_ascii=False) + "\n")
    (output_dir / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_outputs(output_dir: Path, summary: dict, predictions: list[dict]) -> None:
    write_results(output_dir, summary, predictions)
    (output_dir / "summary.md").write_text(markdown_summary(summary, predictions), encoding="utf-8")


def compare_table(dirs: list[str]) -> str:
    """One Markdown table over the summary.json of several runs."""
    lines = [
        "| run | provider | model | dataset | samples | skipped | WER | CER | WER unnormalized | RTFx | batch |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for folder in dirs:
        path = Path(folder) / "summary.json"
        if not path.is_file():
            raise ValueError(f"{folder} has no summary.json (not an eval output folder?)")
        s = json.loads(path.read_text(encoding="utf-8"))
        model = Path(s["model"]).name if Path(s["model"]).is_absolute() else s["model"]
        speed = "–" if s.get("rtfx") is None else f"{s['rtfx']:.2f}"  # eval/ctc_best_path.py times nothing
        lines.append(
            f"| {Path(folder).name} | {s['provider']} | {_cell(model)} | {s['dataset']} | {s['num_samples']} | {s['num_skipped']} "
            f"| {s['wer']:.2%} | {s['cer']:.2%} | {s['wer_unnormalized']:.2%} | {speed} | {s.get('batch_size', '–')} |"
        )
    return "\n".join(lines)


def bootstrap_table(dirs: list[str], exclude_first: int = 0, resamples: int = 1000) -> str:
    """Each run against the first, on the clips both transcribed: a paired bootstrap of the WER
    difference (eval.metrics.paired_bootstrap). ``exclude_first`` leaves out the first clips in dataset
    order, e.g. those a training run picked its checkpoint on, which favour that run."""
    def predictions(folder):
        path = Path(folder) / "predictions.jsonl"
        if not path.is_file():
            raise ValueError(f"{folder} has no predictions.jsonl (not an eval output folder?)")
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]

    base = predictions(dirs[0])
    excluded = {p["id"] for p in base[:exclude_first]}
    lines = [f"Paired bootstrap against {Path(dirs[0]).name} ({resamples} resamples"
             + (f", first {exclude_first} clips left out" if exclude_first else "") + "):", "",
             "| run | clips | WER | base WER | difference | 95% interval | better in |", "|---|---|---|---|---|---|---|"]
    for folder in dirs[1:]:
        new = predictions(folder)
        shared = ({p["id"] for p in base} & {p["id"] for p in new}) - excluded  # a clip one run skipped cannot be paired
        r = paired_bootstrap([p for p in base if p["id"] in shared], [p for p in new if p["id"] in shared], resamples)
        low, high = r["ci95"]
        lines.append(f"| {Path(folder).name} | {r['clips']} | {r['new_wer']:.2%} | {r['base_wer']:.2%} | {r['delta']:+.2%} "
                     f"| {low:+.2%} to {high:+.2%} | {r['new_better']:.1%} |")
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="checkpoint folder or hub id (default: tiny_audio.DEFAULT_MODEL for tiny-audio, "
                        "Whisper tiny.en from the weights cache for faster-whisper, speech models for assemblyai)")
    parser.add_argument("--dataset", help=f"{', '.join(HUB_SETS)}, a .jsonl manifest or an audio folder with metadata")
    parser.add_argument("--split", default="test")
    parser.add_argument("--max-samples", type=int, help="the first N samples, in the dataset's order")
    parser.add_argument("--provider", default="tiny-audio", choices=list(PROVIDERS))
    parser.add_argument("--api-key", help="AssemblyAI key (default: $ASSEMBLYAI_API_KEY)")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--num-beams", type=int, help="beam width (default: the model's own)")
    parser.add_argument("--output-dir", type=Path, help="default: runs/eval/<provider>_<dataset>_<time>")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compute-type", default="int8", help="faster-whisper: int8, float32, ...")
    parser.add_argument("--generate", nargs="+", default=[], metavar="KEY=VALUE",
                        help="tiny-audio: generation options over the model's own, e.g. ctc_weight=0.85 num_beams=4")
    parser.add_argument("--compare", nargs="+", metavar="DIR", help="print one table over earlier runs' output folders "
                        "and, for two or more, a paired bootstrap of each against the first")
    parser.add_argument("--exclude-first", type=int, default=0, help="--compare: leave the first N clips out of the bootstrap "
                        "(e.g. those a training run selected its checkpoint on)")
    args = parser.parse_args(argv)
    if not args.compare and not args.dataset:
        parser.error("--dataset is required (or --compare DIR ...)")
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    if args.generate and args.provider != "tiny-audio":
        parser.error("--generate is for --provider tiny-audio")
    try:
        args.generate = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.generate)}
    except ValueError:
        parser.error("--generate takes KEY=VALUE pairs")
    return args


def provider_options(args) -> dict:
    if args.provider == "assemblyai":
        return {"api_key": args.api_key}
    if args.provider == "faster-whisper":
        return {"compute_type": args.compute_type, "device": args.device}
    return {"device": args.device, "generate": args.generate}


def main(argv=None) -> dict | None:
    args = parse_args(argv)
    if args.compare:
        print(compare_table(args.compare))
        if len(args.compare) > 1:
            print("\n" + bootstrap_table(args.compare, args.exclude_first))
        return None
    dataset = open_dataset(args.dataset, args.split, args.max_samples)
    provider = make_provider(args.provider, args.model, args.num_beams, **provider_options(args))
    run = evaluate(provider, dataset.samples, args.batch_size, total=args.max_samples)
    summary = summarize(run, run_metadata(args, provider, dataset))
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    output_dir = args.output_dir or ROOT / "runs" / "eval" / f"{provider.name}_{Path(args.dataset).stem}_{stamp}"
    write_outputs(output_dir, summary, run["predictions"])
    print(f"WER {summary['wer']:.2%}  CER {summary['cer']:.2%}  (unnormalized WER {summary['wer_unnormalized']:.2%})  "
          f"RTFx {summary['rtfx']:.2f}  {summary['num_samples']} samples, {summary['num_skipped']} skipped  -> {output_dir}")
    return summary


if __name__ == "__main__":
    main()
