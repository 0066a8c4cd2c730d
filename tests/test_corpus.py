"""train/make_corpus.py's job list: seeded, voice- and sentence-disjoint splits, round 2 leaves round 1 alone."""

from train import make_corpus

CLIPS = make_corpus.ROUND_2 + 2000


def test_jobs_are_seeded_and_splits_share_no_voice_or_sentence():
    jobs = make_corpus.make_jobs(0, CLIPS)
    assert jobs == make_corpus.make_jobs(0, CLIPS)
    voices, texts = {}, {}
    for j in jobs:
        voices.setdefault(j["split"], set()).add((j["engine"], j["voice"]))
        texts.setdefault(j["split"], set()).add(j["text"])
    for a, b in [("train", "dev"), ("train", "test"), ("dev", "test")]:
        assert not voices[a] & voices[b], (a, b)
        assert not texts[a] & texts[b], (a, b)


def test_round_two_adds_voices_without_changing_round_one():
    jobs = make_corpus.make_jobs(0, CLIPS)
    table = {(e, v) for rows in make_corpus.VOICES.values() for e, v, _ in rows}
    assert all((j["engine"], j["voice"]) in table for j in jobs[: make_corpus.ROUND_2])
    # the first round's jobs are a prefix of any longer list, whatever comes after them
    assert make_corpus.make_jobs(0, make_corpus.ROUND_2 // 10) == jobs[: make_corpus.ROUND_2 // 10]
    later = jobs[make_corpus.ROUND_2 :]
    assert {"kokoro", "festival"} <= {j["engine"] for j in later if j["split"] == "train"}
    blends = [j["voice"] for j in later if j["engine"] == "kokoro" and "+" in j["voice"]]
    assert len(set(blends)) > 10  # each blend is a new voice
    for blend in blends:
        parts = [p.split("*") for p in blend.split("+")]
        assert {name for name, _ in parts} <= set(make_corpus.KOKORO_VOICES)
        assert abs(sum(float(w) for _, w in parts) - 1) < 0.02
