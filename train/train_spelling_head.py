"""Train a spelling head: a CTC head over letters (at 25 Hz) on the frozen encoder's frames, for
joint decoding beside the word head (tiny_audio/ctc_decoding.py, README item 33).

    python train/train_spelling_head.py --train ~/.cache/tiny_audio/corpus/train-silero-all-x2.jsonl \
        --eval ~/.cache/tiny_audio/asterisk.jsonl --minutes 2 --out runs/spelling-2

The word head must hear each word many times to write it (README, items 25 and 32); letters are
shared by every word, so a spelling head can score words it never heard. This trains one from
scratch on the cached encoder features (train/data.py's FeatureCache, the same per-clip frame
normalization as the model), best-path decodes the eval set and prints its WER and CER with the
shared scorer (eval/metrics.py), then writes ``--model`` with the head added to ``--out/model``.
It learns the synthetic voices within minutes and then reads real speech worse (README item 32):
it runs for minutes, chosen on real speech. The head is an AudioProjector (the CTC projector's
kind) whose outputs are letters; the loop around it is a few lines of torch's ctc_loss.
"""

import argparse
import json
import logging
import re
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from eval.metrics import normalize, wer  # noqa: E402
from tiny_audio import ASRModel, ASRProcessor  # noqa: E402
from tiny_audio.audio import load_audio, split_long_audio  # noqa: E402
from tiny_audio.modeling import ctc_collapse  # noqa: E402
from tiny_audio.ctc_decoding import LETTERS, spelling_labels  # noqa: E402
from train import data  # noqa: E402

SHAPE = {"downsample_rate": 2, "hidden_dim": 1024, "context": 2}  # 50 -> 25 Hz: letters come ~15 a second
log = logging.getLogger("spelling")


def batch_of(frames: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    return nn.utils.rnn.pad_sequence(frames, batch_first=True), torch.tensor([len(f) for f in frames])


def greedy(log_probs: torch.Tensor, positions: torch.Tensor) -> list[str]:
    """Best-path letters of each clip's first ``positions`` outputs, words one space apart."""
    out = []
    for row, n in zip(log_probs.argmax(-1).tolist(), positions.tolist()):
        chars = "".join(LETTERS[s - 1] for s in ctc_collapse(row[:n], blank=0))
        out.append(" ".join(chars.split()))
    return out


def main():
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="assets/default-model", help="the model to add the head to (its encoder and frame normalization)")
    p.add_argument("--train", required=True)
    p.add_argument("--eval", required=True)
    p.add_argument("--features", default="~/.cache/tiny_audio/features/whisper-tiny.en")
    p.add_argument("--minutes", type=float, default=15)
    p.add_argument("--batch-seconds", type=float, default=400)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/spelling")
    args = p.parse_args()
    torch.manual_seed(args.seed)
    model = ASRModel.from_pretrained(args.model).eval()
    processor = ASRProcessor.from_config(model.config)
    cache = data.FeatureCache(args.features, model, processor)
    clips = list({c.id: c for c in data.read_jsonl(args.train)}.values())
    clips = [c for c in clips if cache.is_fresh(c) and spelling_labels(c.text)]
    log.info(f"{len(clips)} training clips with cached features")
    model.config.spelling_head = SHAPE
    head = model.spelling_head = model.new_spelling_head(SHAPE)
    opt = torch.optim.AdamW(head.parameters(), lr=args.lr, weight_decay=0.01)
    start, step, epoch, losses = time.time(), 0, 0, []
    while time.time() - start < args.minutes * 60:
        epoch += 1
        for batch in data.length_batches(clips, args.batch_seconds, 96, args.seed, epoch):
            if time.time() - start >= args.minutes * 60:
                break
            group = [clips[i] for i in batch]
            targets = [torch.tensor(spelling_labels(c.text)) for c in group]
            with torch.autocast("cpu", dtype=torch.bfloat16):  # the model's frame normalization, then the head
                log_probs, positions = model.spelling_log_probs(*batch_of([cache.load(c) for c in group]))
            loss = nn.functional.ctc_loss(log_probs.transpose(0, 1), torch.cat(targets), positions,
                                          torch.tensor([len(t) for t in targets]), zero_infinity=True)
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(head.parameters(), 1.0)
            opt.step()
            losses.append(loss.item())
            step += 1
            if step % 50 == 0:
                log.info(f"step {step} loss {sum(losses[-50:]) / 50:.3f} ({(time.time() - start) / 60:.1f} min)")
    # Real speech: encode, decode, score with the shared scorer.
    rows = [json.loads(line) for line in open(Path(args.eval).expanduser())]
    refs, hyps = [], []
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        for r in rows:  # one clip at a time, in pieces under the encoder's window as the pipeline cuts them
            pieces = split_long_audio(load_audio(r["audio"]), 29.0)
            feats = processor.features(pieces)
            frames, lengths = model.encode(feats["input_features"], feats["feature_lengths"])
            hyps.append(" ".join(greedy(*model.spelling_log_probs(frames.float(), lengths))))
            refs.append(r["text"])
    keep = [i for i, r in enumerate(refs) if normalize(r)]  # as eval.py, skip what normalizes to nothing
    scores = wer([refs[i] for i in keep], [hyps[i] for i in keep])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out / "model")  # the model it read, with this spelling head
    with open(out / "predictions.jsonl", "w") as f:
        for row, r, h in zip(rows, refs, hyps):
            f.write(json.dumps({"id": row.get("id"), "reference": r, "hypothesis": h}) + "\n")
    log.info(f"{step} steps, last 50 loss {sum(losses[-50:]) / max(len(losses[-50:]), 1):.3f}; "
             f"{len(keep)} eval clips: WER {scores['wer']:.2%} CER {scores['cer']:.2%} "
             f"(sub {scores['substitutions']} ins {scores['insertions']} del {scores['deletions']})")


if __name__ == "__main__":
    main()
