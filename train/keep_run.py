"""Keep a run in the repo: what a later session needs to start from it, or to ship it, in ~10 MB.

    python train/keep_run.py runs/ctc-x1            # -> train/checkpoints/ctc-x1/

runs/ lives outside git and a machine can be replaced between sessions (session 14's runs were lost
that way). The kept folder is a small run folder: its ``log.csv`` and ``train_config.json`` (what
ship.py's ``--runs`` reads) and ``final/`` with the config and the projector in bf16, without the
optimizer state. ``init_from=train/checkpoints/ctc-x1/final`` starts the next stage from it, and
``eval/eval.py --model train/checkpoints/ctc-x1/final`` reads it as it is: a folder without the model
code runs on the installed package's classes (no copy of the code per kept run in git).
"""

import argparse
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

REPO = Path(__file__).resolve().parent.parent
KEPT = REPO / "train" / "checkpoints"


def save_bf16(source: Path, dest: Path) -> None:
    """Rewrite a projector's safetensors in bf16 (source and dest may be the same file).

    bf16 halves the file; from_pretrained loads it back into the fp32 projector parameters.
    """
    weights = load_file(str(source))
    save_file({k: v.to(torch.bfloat16).contiguous() for k, v in weights.items()}, str(dest),
              metadata={"format": "pt"})


def keep(run: Path, checkpoint: str = "final", dest_root: Path = KEPT) -> Path:
    source = run / checkpoint
    if not (source / "model.safetensors").exists():
        raise SystemExit(f"{source} holds no model.safetensors")
    dest = dest_root / run.name
    (dest / "final").mkdir(parents=True, exist_ok=True)
    for name in ("log.csv", "train_config.json"):
        if (run / name).exists():
            shutil.copy(run / name, dest / name)
    for name in ("config.json", "selection.json"):
        if (source / name).exists():
            shutil.copy(source / name, dest / "final" / name)
    save_bf16(source / "model.safetensors", dest / "final" / "model.safetensors")
    return dest


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="a run folder (runs/NAME)")
    parser.add_argument("--checkpoint", default="final", help="which checkpoint inside it (final, best, ...)")
    args = parser.parse_args()
    print(keep(Path(args.run), args.checkpoint))


if __name__ == "__main__":
    main()
