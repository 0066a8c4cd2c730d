"""Diagnostic: what Whisper tiny.en's own decoder makes of the encoder frames Tiny Audio computes.

Tiny Audio runs the Whisper encoder on the clip alone: positions sliced to the clip, padding masked,
so a clip gives the same frames alone or in a batch (``ASRModel.encode``). Whisper was trained on
30 s windows padded with silence. This script decodes each clip greedily with Whisper's own decoder
(CTranslate2, from the same wheel) on both kinds of frames and prints WER/CER for each:

- ``window``: the stock 30 s window (what faster-whisper does)
- ``clip``: our clip-only frames

Without the padding the decoder often never emits end-of-text, so it also prints an "oracle-cut"
WER: each hypothesis cut to its reference's word count. That isolates what the frames carry from
when the decoder stops.

    python eval/whisper_window.py --dataset ~/.cache/tiny_audio/asterisk.jsonl [--max-samples 50]
"""

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: the repo root goes first, so `eval` is the package
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import ctranslate2
import tokenizers
import torch
from tqdm import tqdm

from eval.data import read_manifest
from eval.metrics import normalize, wer
from tiny_audio import ASRModel, ASRProcessor
from tiny_audio.audio import SAMPLE_RATE, load_audio
from tiny_audio.presets import preset_config
from tiny_audio.weights import ctranslate2_dir

PROMPT = [["<|startoftranscript|>", "<|notimestamps|>"]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", required=True, help="JSONL manifest of audio + text")
    ap.add_argument("--max-samples", type=int)
    ap.add_argument("--max-length", type=int, default=120, help="decoder token cap per clip")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    config = preset_config("embedded")
    model, processor = ASRModel(config).eval(), ASRProcessor.from_config(config)
    window_features = processor.feature_extractor  # transformers' WhisperFeatureExtractor: pads to 30 s
    ct2_dir = ctranslate2_dir(config.encoder_name_or_path)
    whisper = ctranslate2.models.Whisper(ct2_dir, device="cpu", compute_type="float32", intra_threads=args.threads)
    tokenizer = tokenizers.Tokenizer.from_file(str(Path(ct2_dir) / "tokenizer.json"))

    def decode(frames: torch.Tensor) -> str:
        result = whisper.generate(ctranslate2.StorageView.from_array(frames.float().contiguous().numpy()),
                                  PROMPT, beam_size=1, max_length=args.max_length)
        return tokenizer.decode(result[0].sequences_ids[0], skip_special_tokens=True)

    samples = list(read_manifest(args.dataset))[: args.max_samples]
    refs, hyps = [], {"window": [], "clip": []}
    start = time.time()
    with torch.no_grad():
        for sample in tqdm(samples, desc="clips"):
            if not normalize(sample.text).strip():
                continue  # nothing to score against
            audio = load_audio(sample.audio)
            full = window_features(audio, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
            hyps["window"].append(decode(model.encoder(full).last_hidden_state))
            batch = processor.features([audio])
            frames, _ = model.encode(batch["input_features"], batch["feature_lengths"])
            hyps["clip"].append(decode(frames))
            refs.append(sample.text)

    print(f"{len(refs)} clips, {time.time() - start:.0f} s")
    print("| frames | WER | CER | oracle-cut WER | oracle-cut CER |\n|---|---|---|---|---|")
    for name, texts in hyps.items():
        cut = [" ".join(normalize(h).split()[: len(normalize(r).split())]) for r, h in zip(refs, texts)]
        raw, oracle = wer(refs, texts), wer(refs, cut)
        print(f"| {name} | {raw['wer']:.2%} | {raw['cer']:.2%} | {oracle['wer']:.2%} | {oracle['cer']:.2%} |")


if __name__ == "__main__":
    main()
