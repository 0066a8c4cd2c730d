"""Loss and WER curves of a run folder's log.csv, written to <run>/curves.png."""

import csv
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402


def samples_at(steps: list[int], train_rows: list[dict]) -> list[float]:
    """Samples seen at each step. Evals fall between logged steps (eval_every need not be a multiple of
    log_every), so the count is interpolated between the training rows around it."""
    if not train_rows:
        return [float(step) for step in steps]
    logged = [int(r["step"]) for r in train_rows]
    return np.interp(steps, [0] + logged, [0] + [int(r["samples"]) for r in train_rows]).tolist()


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
    for name in sorted({r["eval_set"] for r in evals}):
        rows = [r for r in evals if r["eval_set"] == name]
        seen = samples_at([int(r["step"]) for r in rows], train)
        right.plot(seen, [float(r["eval_wer"]) for r in rows], marker="o", label=f"{name}: transcript")
        if any(r.get("eval_ctc_wer") for r in rows):
            right.plot(seen, [float(r["eval_ctc_wer"] or "nan") for r in rows], marker="x", linestyle="--",
                       label=f"{name}: CTC alone")
    right.set(title="WER", xlabel="samples seen", ylabel="WER")
    if evals:
        right.legend()
    fig.tight_layout()
    path = run_dir / "curves.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
