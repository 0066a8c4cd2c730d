"""Average the weights of checkpoints from one line of training (a "model soup").

    python train/average_checkpoints.py runs/ctc-c3/final runs/ctc-d3/final --out runs/ctc-avg-c3-d3/final

Two heads along one fine-tuning path (the second started from the first) often read unseen speech
better as their mean than either alone: session 42's default CTC projector is the mean of `ctc-c3`
and `ctc-d3` (README item 35). The folders must hold the same tensors (names and shapes): the output
copies the first folder's config and code and writes the mean as ``model.safetensors``, with
``averaged_from.json`` naming the sources for the model card.
"""

import argparse
import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

WEIGHTS = "model.safetensors"
SOURCES = "averaged_from.json"


def average(folders: list[Path]) -> dict[str, torch.Tensor]:
    """The element-wise mean of each tensor, computed in fp32 and stored in the first folder's dtype."""
    states = [load_file(folder / WEIGHTS) for folder in folders]
    first = states[0]
    for folder, state in zip(folders[1:], states[1:]):
        if state.keys() != first.keys():
            raise SystemExit(f"{folder} holds other tensors than {folders[0]}: "
                             f"{sorted(set(state) ^ set(first))[:5]}")
        shapes = [k for k in first if state[k].shape != first[k].shape]
        if shapes:
            raise SystemExit(f"{folder}: shapes differ from {folders[0]} for {shapes[:5]}")
    return {k: (sum(s[k].float() for s in states) / len(states)).to(first[k].dtype).contiguous() for k in first}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+", help="checkpoint folders (each with model.safetensors)")
    parser.add_argument("--out", required=True, help="the averaged checkpoint folder")
    args = parser.parse_args()
    folders = [Path(c) for c in args.checkpoints]
    if len(folders) < 2:
        raise SystemExit("average at least two checkpoints")
    mean = average(folders)  # checked before anything is written
    out = Path(args.out)
    if out.exists():
        raise SystemExit(f"{out} exists; pick a new folder")
    shutil.copytree(folders[0], out, ignore=shutil.ignore_patterns(WEIGHTS))
    save_file(mean, out / WEIGHTS, metadata={"format": "pt"})
    (out / SOURCES).write_text(json.dumps([str(f) for f in folders], indent=1) + "\n")
    print(f"{out}: the mean of {len(folders)} checkpoints, {len(mean)} tensors")


if __name__ == "__main__":
    main()
