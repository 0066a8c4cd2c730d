"""CTC best-path WER of projectors: how many words a projector carries before the LLM reads them.

    python eval/ctc_best_path.py --model assets/default-model train/checkpoints/ctc-n2/final \\
        --dataset ~/.cache/tiny_audio/asterisk.jsonl [--max-samples 50] [--ensemble] [--output-dir runs/ctc-eval]

Each model folder's projector scores its outputs against the LLM's token embeddings
(``ASRModel.ctc_logits``); the best path (argmax per position, repeats merged, blanks dropped) is
the transcript (``tiny_audio.modeling.ctc_collapse``, as ``ASRModel.ctc_greedy``). The folders must share the encoder, the LLM and the CTC blank (only the projector
and its ``frame_norm`` may differ), so the encoder runs once per clip and each further projector
costs a few seconds. ``--ensemble`` also scores the mean of all models' log-probabilities.
A folder needs only config.json and model.safetensors (train/checkpoints/*/final will do).
``--output-dir`` writes each model's per-clip predictions.jsonl as eval/eval.py does (one subfolder
per model, named after its path) and a summary.json, so ``eval/eval.py --compare`` gives two heads'
paired bootstrap.

This is the measure the README's training notes quote as "CTC best path"; it is not how the
shipped model decodes (joint CTC/LLM, tiny_audio/ctc_decoding.py): use eval/eval.py for that.
Clips are scored as eval/eval.py scores them (Whisper's English normalizer, corpus WER).
"""

import argparse
import copy
import re
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file
from tqdm import tqdm
from transformers.utils import cached_file

if __package__ in (None, ""):  # run as a script: the repo root goes first, so `eval` is this package
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from eval.data import open_dataset
from eval.eval import _prediction, scorable_audio, write_results
from eval.metrics import wer
from tiny_audio import SAMPLE_RATE, ASRConfig, ASRModel, ASRProcessor
from tiny_audio.audio import split_long_audio
from tiny_audio.modeling import CTC_HEAD_KEYS, ctc_collapse



@torch.no_grad()
def encode_clips(model: ASRModel, processor: ASRProcessor, audio: list) -> list[list[tuple[torch.Tensor, int]]]:
    """Encoder frames of each clip, split at quiet points past the encoder's window as the pipeline splits."""
    limit = processor.max_seconds
    clips = []
    for samples in tqdm(audio, desc="encoding", unit="clip"):
        pieces = split_long_audio(samples, limit) if limit else [samples]  # short clips stay whole
        encoded = []
        for piece in pieces:
            features = processor.features([piece])
            frames, lengths = model.encode(features["input_features"], features["feature_lengths"])
            encoded.append((frames[0, : lengths[0]].float(), int(lengths[0])))
        clips.append(encoded)
    return clips


@torch.no_grad()
def projector_log_probs(model: ASRModel, clips) -> list[list[torch.Tensor]]:
    """Per clip, per piece: (positions, vocabulary) CTC log-probs of the model's current projector."""
    table = model.decoder.get_input_embeddings().weight
    out = []
    for pieces in clips:
        row = []
        for frames, n in pieces:
            embeds, lengths = model.ctc_embeddings(frames[None], torch.tensor([n]))
            row.append(model.ctc_logits(embeds, table)[0, : lengths[0]].log_softmax(-1))
        out.append(row)
    return out


def readable(samples) -> tuple[list, list]:
    """The samples eval/eval.py scores, with their audio; the others are skipped with the reason."""
    kept, audio = [], []
    for sample in samples:
        try:
            audio.append(scorable_audio(sample))
            kept.append(sample)
        except (ValueError, OSError) as err:
            print(f"skipped {sample.id}: {err}", file=sys.stderr)
    return kept, audio


def transcripts(log_probs, blank: int, tokenizer) -> list[str]:
    return [tokenizer.decode([t for piece in row for t in ctc_collapse(piece.argmax(-1).tolist(), blank)]).strip() for row in log_probs]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", nargs="+", required=True, help="checkpoint folders (config.json + model.safetensors)")
    parser.add_argument("--dataset", required=True, help="a .jsonl manifest or an audio folder (see eval/data.py)")
    parser.add_argument("--max-samples", type=int)
    parser.add_argument("--ensemble", action="store_true", help="also score the mean of the models' log-probs")
    parser.add_argument("--output-dir", type=Path, help="per model, a subfolder with predictions.jsonl and summary.json")
    args = parser.parse_args(argv)

    configs = [ASRConfig.from_pretrained(m) for m in args.model]
    for path, config in zip(args.model[1:], configs[1:]):
        differ = [k for k in CTC_HEAD_KEYS if getattr(config, k) != getattr(configs[0], k)]
        if differ:
            raise SystemExit(f"{path} differs from {args.model[0]} in {', '.join(differ)}: only projectors may differ")
    blank = configs[0].ctc_blank_id
    if blank is None:
        raise SystemExit(f"{args.model[0]} has no ctc_blank_id: it was not trained with a CTC head")

    model = ASRModel.from_pretrained(args.model[0]).eval()
    processor = ASRProcessor.from_config(model.config)
    dataset = list(open_dataset(args.dataset, max_samples=args.max_samples).samples)
    samples, audio = readable(dataset)
    skipped = len(dataset) - len(samples)
    refs = [s.text for s in samples]
    clips = encode_clips(model, processor, audio)

    results, total = [], None  # total: the running sum of log-probs, for --ensemble (one model's worth of memory)
    seconds = [len(a) / SAMPLE_RATE for a in audio]

    def score(name: str, log_probs) -> None:
        hyps = transcripts(log_probs, blank, processor.tokenizer)
        results.append((name, wer(refs, hyps)))
        if args.output_dir:
            summary = {**results[-1][1], "provider": "ctc-best-path", "model": name, "dataset": args.dataset,
                       "num_samples": len(samples), "num_skipped": skipped}
            write_results(args.output_dir / (re.sub(r"[^\w.-]+", "_", name).strip("_") or "model"), summary,
                          [_prediction(sample, hyp, t) for sample, hyp, t in zip(samples, hyps, seconds)])

    for path, config in zip(args.model, configs):
        model.config.frame_norm = config.frame_norm
        if config.ctc_projector != (model.ctc_projector is not None):  # the head may have its own projector
            model.ctc_projector = copy.deepcopy(model.projector) if config.ctc_projector else None
        model.load_projector(load_file(cached_file(path, "model.safetensors")))
        log_probs = projector_log_probs(model, clips)
        score(path, log_probs)
        if args.ensemble:
            total = log_probs if total is None else [[a + b for a, b in zip(*rows)] for rows in zip(total, log_probs)]
    if args.ensemble and len(args.model) > 1:  # argmax of the sum = argmax of the mean
        score("mean of the above", total)

    print(f"\nCTC best path, {len(samples)} clips of {args.dataset}\n")
    print("| model | WER | CER | sub | ins | del |\n|---|---|---|---|---|---|")
    for name, r in results:
        print(f"| {name} | {100 * r['wer']:.2f}% | {100 * r['cer']:.2f}% | {r['substitutions']} | {r['insertions']} | {r['deletions']} |")
    return results


if __name__ == "__main__":
    main()
