"""Word errors by how often the training texts hold the word: is it the voices, or the vocabulary?

    python eval/word_coverage.py runs/eval/default-g5/predictions.jsonl \\
        --train ~/.cache/tiny_audio/corpus/train.jsonl [--edges 1 10 100 1000]

Each reference word of an eval run (eval/eval.py's predictions.jsonl, already normalized) is
aligned to the hypothesis (``eval.metrics.align``, jiwer); a word counts as missed when it is substituted or deleted.
Words are grouped by their hearings: the number of training clips whose text, through the same
Whisper normalizer, holds the word (numbers are spoken as words in training and scored as digits,
so the normalizer is what makes the two meet). Prints a markdown table, one row per bucket.
"""

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

if __package__ in (None, ""):  # run as a script: the repo root goes first, so `eval` is this package, not this file
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from eval.metrics import align, normalize  # noqa: E402


def hearings(manifest: Path) -> Counter:
    counts = Counter()
    with open(manifest) as f:
        for line in f:
            counts.update(set(normalize(json.loads(line)["text"]).split()))
    return counts


def missed_words(predictions: Path) -> list[tuple[str, bool]]:
    """(reference word, missed?) for every reference word of every scored clip."""
    out = []
    with open(predictions) as f:
        for line in f:
            p = json.loads(line)
            pairs = align(p.get("reference_normalized", ""), p.get("hypothesis_normalized", ""), normalized=False)
            out += [(ref, op != "equal") for op, ref, _ in pairs if op != "insert"]
    return out


def table(words: list[tuple[str, bool]], heard: Counter, edges: list[int]) -> str:
    bounds = [0] + edges
    names = [f"{lo}-{hi - 1}" if hi - 1 > lo else f"{lo}" for lo, hi in zip(bounds, bounds[1:])] + [f"{bounds[-1]}+"]
    rows = {name: [0, 0] for name in names}
    for word, missed in words:
        name = names[sum(heard[word] >= e for e in edges)]
        rows[name][0] += 1
        rows[name][1] += missed
    lines = ["| training clips holding the word | reference words | missed | miss rate |", "|---|---|---|---|"]
    lines += [f"| {name} | {n} | {m} | {m / n:.1%} |" for name, (n, m) in rows.items() if n]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("predictions", type=Path, help="an eval/eval.py predictions.jsonl")
    parser.add_argument("--train", type=Path, required=True, help="the training manifest (one clip per line)")
    parser.add_argument("--edges", type=int, nargs="+", default=[1, 10, 100, 1000])
    args = parser.parse_args()
    print(table(missed_words(args.predictions), hearings(args.train), sorted(args.edges)))


if __name__ == "__main__":
    main()
