"""Word and character error rates, counted the way the Open ASR Leaderboard counts them, but one change.

Both sides go through Whisper's English text normalizer (lower case, punctuation removed,
spelled-out numbers as digits, British spellings as American, "mr." -> "mister", "n't" -> " not")
before jiwer aligns them; the one change is that words left without a letter or digit are
dropped (see ``normalize``). The figures on the raw text are reported beside them.

Importing this module costs only the standard library: the normalizer and jiwer load on first
use, so training code can import ``normalize`` without pulling in the evaluation stack.
"""

import functools
from collections import Counter

OPS = ("equal", "substitute", "insert", "delete")  # the alignment operations, as jiwer names them


@functools.cache
def _normalizer():
    from whisper_normalizer.english import EnglishTextNormalizer

    return EnglishTextNormalizer()


def normalize(text: str) -> str:
    """Whisper's English normalizer, with runs of spaces collapsed to one and tokens without a
    letter or digit dropped: the normalizer keeps a lone "." from a trailing "..." ("Press..." ->
    "press ."), which 23 of the 305 real prompts' references end with; it is not a word to hear."""
    return " ".join(word for word in _normalizer()(text).split() if any(c.isalnum() for c in word))


def _rate(errors: int, reference_length: int) -> float:
    # An empty reference makes every hypothesis word an insertion: count them against one word,
    # as jiwer does, rather than dividing by zero.
    return errors / max(reference_length, 1)


def _errors_and_words(prediction: dict) -> tuple[int, int]:
    """Word errors and reference words of one eval prediction (the counts ``eval.py`` writes per clip)."""
    p = prediction
    return p["substitutions"] + p["insertions"] + p["deletions"], p["hits"] + p["substitutions"] + p["deletions"]


def _word_counts(refs: list[str], hyps: list[str]) -> dict:
    import jiwer

    out = jiwer.process_words(refs, hyps)
    counts = {"substitutions": out.substitutions, "insertions": out.insertions, "deletions": out.deletions, "hits": out.hits}
    counts["wer"] = _rate(out.substitutions + out.insertions + out.deletions, out.hits + out.substitutions + out.deletions)
    return counts


def _cer(refs: list[str], hyps: list[str]) -> float:
    import jiwer

    out = jiwer.process_characters(refs, hyps)
    return _rate(out.substitutions + out.insertions + out.deletions, out.hits + out.substitutions + out.deletions)


def wer(refs, hyps) -> dict:
    """Corpus error rates over pairs of reference and hypothesis (lists, or one string each).

    Returns ``wer``, ``cer``, ``substitutions``, ``insertions``, ``deletions``, ``hits`` (word
    counts after normalization) and ``wer_unnormalized``, ``cer_unnormalized`` (raw text, split
    on whitespace). Rates are fractions (0.12 = 12%): errors summed over all pairs divided by
    reference words summed over all pairs, not a mean of per-pair rates.
    """
    if isinstance(refs, str):
        refs, hyps = [refs], [hyps]
    refs, hyps = list(refs), list(hyps)
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    if not refs:
        raise ValueError("no reference/hypothesis pairs to score")
    norm_refs, norm_hyps = [normalize(t) for t in refs], [normalize(t) for t in hyps]
    result = _word_counts(norm_refs, norm_hyps)
    result["cer"] = _cer(norm_refs, norm_hyps)
    result["wer_unnormalized"] = _word_counts(refs, hyps)["wer"]
    result["cer_unnormalized"] = _cer(refs, hyps)
    return result


def align(ref: str, hyp: str, normalized: bool = True) -> list[tuple[str, str | None, str | None]]:
    """Word alignment as (op, ref_word, hyp_word) with op in OPS; the missing side of an insert or delete is None.

    Both texts are normalized first (as ``wer`` scores them) unless ``normalized=False``.
    """
    import jiwer

    if normalized:
        ref, hyp = normalize(ref), normalize(hyp)
    if not ref.split() and not hyp.split():
        return []
    out = jiwer.process_words(ref, hyp)
    ref_words, hyp_words = out.references[0], out.hypotheses[0]
    pairs = []
    for chunk in out.alignments[0]:
        ref_span = ref_words[chunk.ref_start_idx : chunk.ref_end_idx]
        hyp_span = hyp_words[chunk.hyp_start_idx : chunk.hyp_end_idx]
        if chunk.type == "delete":
            pairs += [(chunk.type, word, None) for word in ref_span]
        elif chunk.type == "insert":
            pairs += [(chunk.type, None, word) for word in hyp_span]
        else:  # equal / substitute: spans of the same length
            pairs += [(chunk.type, r, h) for r, h in zip(ref_span, hyp_span)]
    return pairs


def wer_by_duration(predictions: list[dict], edges: tuple[float, ...] = (1.5, 3.0, 6.0)) -> list[dict]:
    """Corpus WER per band of clip length, from eval predictions (``audio_seconds`` and word counts).

    Short clips fail differently (a single misheard word is 100%), so one overall figure hides
    where a model breaks; bands are [0, e1), [e1, e2), ..., [e_last, inf) seconds.
    """
    bounds = [0.0, *edges, float("inf")]
    rows = []
    for low, high in zip(bounds, bounds[1:]):
        band = [p for p in predictions if low <= p["audio_seconds"] < high]
        counts = [_errors_and_words(p) for p in band]
        errors, words = sum(e for e, _ in counts), sum(w for _, w in counts)
        rows.append({"low": low, "high": high, "clips": len(band), "words": words, "errors": errors,
                     "wer": _rate(errors, words) if band else None})
    return rows


def frequent_errors(pairs: list[tuple[str, str]], top: int = 10) -> list[tuple[str, str | None, str | None, int]]:
    """The most frequent word errors over (reference, hypothesis) pairs: (op, ref_word, hyp_word, count),
    after normalization, as ``align`` reports them ("substitute", "insert" or "delete")."""
    counts = Counter(op_words for ref, hyp in pairs for op_words in align(ref, hyp) if op_words[0] != "equal")
    return [(op, r, h, n) for (op, r, h), n in counts.most_common(top)]


def rtfx(audio_seconds: float, compute_seconds: float) -> float:
    """Inverse real-time factor: seconds of audio transcribed per second of compute (higher is faster)."""
    if compute_seconds <= 0:
        raise ValueError(f"compute time must be positive, got {compute_seconds} s")
    return audio_seconds / compute_seconds


def paired_bootstrap(base: list[dict], new: list[dict], resamples: int = 1000, seed: int = 0) -> dict:
    """How sure "new" beats "base" on the same clips: eval predictions of both, paired by ``id``.

    Draws the clip list with replacement ``resamples`` times (the same draw for both models, so
    the clips' own difficulty cancels) and recomputes each corpus WER. Returns both WERs, their
    difference ``delta`` (new - base; negative = new is better), its central 95% interval and
    ``new_better``, the share of resamples where new's WER is lower. Predictions need the word
    counts ``_prediction`` writes (substitutions, insertions, deletions, hits).
    """
    import numpy as np

    by_id = {p["id"]: p for p in new}
    if len(by_id) != len(new) or {p["id"] for p in base} != set(by_id) or len(base) != len(new):
        raise ValueError("paired bootstrap needs both runs on the same clips (one prediction per id in each)")
    if not base:
        raise ValueError("no predictions to compare")

    base_errors, words = np.array([_errors_and_words(p) for p in base], dtype=float).T
    new_errors = np.array([_errors_and_words(by_id[p["id"]])[0] for p in base], dtype=float)
    draws = np.random.default_rng(seed).integers(len(base), size=(resamples, len(base)))
    deltas = (new_errors[draws].sum(1) - base_errors[draws].sum(1)) / np.maximum(words[draws].sum(1), 1)
    return {"clips": len(base), "base_wer": _rate(base_errors.sum(), words.sum()), "new_wer": _rate(new_errors.sum(), words.sum()),
            "delta": _rate(new_errors.sum() - base_errors.sum(), words.sum()),
            "ci95": (float(np.percentile(deltas, 2.5)), float(np.percentile(deltas, 97.5))),
            "new_better": float((deltas < 0).mean())}
