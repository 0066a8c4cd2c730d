"""Loss and WER curves of a run folder's log.csv, written to <run>/curves.png."""

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402


def plot_run(run_dir) -> Path:
    run_dir = Path(run_dir)
    with open(run_dir / "log.csv") as f:
        rows = list(csv.DictReader(f))
    train = [r for r in rows if r["loss"]]
    evals = [r for r in rows if r["eval_set"]]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    if train:
        samples = [int(r["samples"]) for r in train]
        left.plot(samples, [float(r["loss"]) for r in train], label="total")
        if any(r["lm_loss"] for r in train):
            left.plot(samples, [float(r["lm_loss"] or "nan") for r in train], label="LM (transcript)")
        if any(r["ctc_loss"] for r in train):
            left.plot(samples, [float(r["ctc_loss"] or "nan") for r in train], label="CTC (aux)")
    left.set(title="training loss", xlabel="samples seen", ylabel="loss")
    left.legend()
    step_to_samples = {int(r["step"]): int(r["samples"]) for r in train}
    for name in sorted({r["eval_set"] for r in evals}):
        points = [(step_to_samples.get(int(r["step"]), int(r["step"])), float(r["eval_wer"])) for r in evals if r["eval_set"] == name]
        right.plot(*zip(*points), marker="o", label=name)
    right.set(title="WER (greedy)", xlabel="samples seen", ylabel="WER")
    if evals:
        right.legend()
    fig.tight_layout()
    path = run_dir / "curves.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
