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


def test_round_three_is_short_phrases_from_the_splits_own_sentences():
    jobs = make_corpus.make_jobs(0, make_corpus.ROUND_3 + 600)
    short = jobs[make_corpus.ROUND_3 :]
    texts = {}
    for j in short:
        words = j["text"].rstrip(".").split()
        assert 1 <= len(words) <= 3 and j["text"][0].isupper(), j["text"]
        if len(words) == 1:
            assert words[0].lower() not in make_corpus.FUNCTION_WORDS
        texts.setdefault(j["split"], set()).add(j["text"])
    assert set(texts) == {"train", "dev", "test"}
    for a, b in [("train", "dev"), ("train", "test"), ("dev", "test")]:
        assert not texts[a] & texts[b], (a, b)
    words_of = {}  # split -> its sentences' words, lowercased, sentences apart: " a b | c d e | ..."
    for sentence in make_corpus.load_sentences(0):
        words = make_corpus.re.findall(r"[A-Za-z]+(?:'[A-Za-z]+)?", sentence.lower())
        words_of.setdefault(make_corpus.sentence_split(sentence), []).append(" ".join(words))
    words_of = {split: " " + " | ".join(rows) + " " for split, rows in words_of.items()}
    for j in short:  # consecutive words of one sentence of the same split
        assert f" {j['text'].rstrip('.').lower()} " in words_of[j["split"]], j
