"""Benchmark: the CTC loss over the whole vocabulary, plain log-softmax vs tiny_audio.ctc_head's chunks.

    python train/bench_ctc_head.py                    # the embedded preset's shapes: 49,152 x 576
    python train/bench_ctc_head.py --frames 2000 --threads 1

Both run the model's CTC head (scaled cosine, bf16 autocast) on the same random batch of
projector outputs; prints seconds per forward+backward, the ratio, and each one's gradient error
against a float32 run of the plain version. Random values: the speed does not depend on them.
"""

import argparse
import time

import torch
from torch import nn

from tiny_audio.ctc_head import log_probs_at
from tiny_audio.modeling import CTC_SCALE


def batch(frames: int, clips: int, vocab: int, dim: int, words_per_clip: int = 40):
    g = torch.Generator().manual_seed(0)
    audio = torch.randn(clips, frames // clips, dim, generator=g).requires_grad_()
    table = torch.randn(vocab, dim, generator=g)
    lengths = torch.full((clips,), frames // clips)
    targets = torch.randint(0, vocab, (clips * words_per_clip,), generator=g)
    return audio, table, lengths, targets, torch.full((clips,), words_per_clip)


def plain(audio, table, lengths, targets, target_lengths, blank=0):
    queries = CTC_SCALE * nn.functional.normalize(audio.float(), dim=-1)
    log_probs = (queries @ nn.functional.normalize(table, dim=-1).T).log_softmax(-1)
    return nn.functional.ctc_loss(log_probs.transpose(0, 1), targets, lengths, target_lengths, blank=blank)


def chunked(audio, table, lengths, targets, target_lengths, blank=0):
    queries = CTC_SCALE * nn.functional.normalize(audio.float(), dim=-1)
    columns, positions = torch.unique(torch.cat([targets, targets.new_tensor([blank])]), return_inverse=True)
    log_probs = log_probs_at(queries.flatten(0, 1), nn.functional.normalize(table, dim=-1), columns)
    log_probs = log_probs.view(*audio.shape[:2], -1).log_softmax(-1)
    return nn.functional.ctc_loss(log_probs.transpose(0, 1), positions[:-1], lengths, target_lengths, blank=int(positions[-1]))


def timed(fn, audio, *rest, repeats: int, autocast: bool = True):
    seconds = []
    for _ in range(repeats):
        audio.grad = None
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            fn(audio, *rest).backward()
        seconds.append(time.perf_counter() - start)
    return min(seconds), audio.grad.clone()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=4000, help="projector frames per batch (400 s of audio at 10/s)")
    parser.add_argument("--clips", type=int, default=40)
    parser.add_argument("--vocab", type=int, default=49152)
    parser.add_argument("--dim", type=int, default=576)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = batch(args.frames, args.clips, args.vocab, args.dim)
    _, reference = timed(plain, *data, repeats=1, autocast=False)
    rows = []
    for name, fn in (("plain log-softmax", plain), ("ctc_head chunks", chunked)):
        seconds, grad = timed(fn, *data, repeats=args.repeats)
        rows.append((name, seconds, float((grad - reference).norm() / reference.norm())))
    print(f"{args.frames} frames x {args.vocab} tokens, {args.threads} threads, bf16 autocast, best of {args.repeats}")
    print("| CTC loss | s per forward+backward | gradient error vs float32 |\n|---|---|---|")
    for name, seconds, error in rows:
        print(f"| {name} | {seconds:.2f} | {error:.4f} |")
    print(f"speed-up: {rows[0][1] / rows[1][1]:.2f}x")


if __name__ == "__main__":
    main()
