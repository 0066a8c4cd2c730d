"""Training sentences from offline sources: Debian fortunes and WordNet examples, plus templated numbers/dates/commands
(``load_sentences``), and broad-vocabulary prose from pinned PyPI wheels (``load_broad_sentences``).

Every target is natural cased, punctuated text with numbers written as spoken words, so
what the TTS voice says and the label agree (num2words verbalizes digits before synthesis).
Licences: fortunes (BSD / mixed, Debian `fortunes*`), WordNet 3.0 licence (`wordnet-base`),
templates our own; Wikipedia sample (CC BY-SA) and Lee news corpus (research use) from gensim's
test data, conversations from chatterbot-corpus (BSD-3).
"""

import bz2
import glob
import hashlib
import html
import random
import re
import subprocess
import sys
import zipfile
from pathlib import Path

from num2words import num2words

ALLOWED = re.compile(r"^[A-Za-z][A-Za-z ,.'?!;:-]*[A-Za-z.?!]$")


def clean(text: str, min_words: int = 3, max_words: int = 30) -> str | None:
    text = re.sub(r"\s+", " ", text).strip().strip('"').strip()
    text = text.replace("`", "'").replace("--", ", ")
    if not ALLOWED.match(text):
        return None
    words = text.split()
    if not min_words <= len(words) <= max_words or any(len(w) > 18 for w in words):
        return None
    if sum(c.isupper() for c in text) > 0.3 * len(words) + 2:  # SHOUTING, acronyms soup
        return None
    return text[0].upper() + text[1:]


def fortunes(folder: str = "/usr/share/games/fortunes") -> list[str]:
    out = []
    for path in sorted(glob.glob(f"{folder}/*")):
        if "." in path.rsplit("/", 1)[-1]:
            continue  # .dat indexes and .u8 duplicates
        try:
            body = open(path, encoding="utf-8", errors="ignore").read()
        except OSError:
            continue
        for entry in body.split("\n%\n"):
            entry = re.split(r"\n\s*--", entry)[0]  # drop "-- Author" attributions
            if cleaned := clean(entry):
                out.append(cleaned)
    return out


def wordnet_examples(folder: str = "/usr/share/wordnet") -> list[str]:
    out = []
    for pos in ("noun", "verb", "adj", "adv"):
        try:
            body = open(f"{folder}/data.{pos}", encoding="utf-8", errors="ignore").read()
        except OSError:
            continue
        for example in re.findall(r'"([^"]{15,200})"', body):
            if (cleaned := clean(example, min_words=4)) and not cleaned.endswith((".", "?", "!")):
                out.append(cleaned + ".")
            elif cleaned:
                out.append(cleaned)
    return out


def wordnet_glosses(folder: str = "/usr/share/wordnet") -> list[str]:
    """WordNet's definitions ("a device for ...") as sentences: 117k of them, in the plain words a
    dictionary explains with, so nearly every common English word is in some of them."""
    out = []
    for pos in ("noun", "verb", "adj", "adv"):
        try:
            lines = open(f"{folder}/data.{pos}", encoding="utf-8", errors="ignore").read().splitlines()
        except OSError:
            continue
        for line in lines:
            if line.startswith(" ") or " | " not in line:
                continue  # the licence header
            for part in line.split(" | ", 1)[1].split(";"):
                part = part.strip()
                if part and not part.startswith('"') and (cleaned := clean(part, min_words=4)):
                    out.append(cleaned if cleaned.endswith((".", "?", "!")) else cleaned + ".")
    return out


NAMES = ["Anna", "David", "Maria", "James", "Linda", "Robert", "Sarah", "Michael", "Emily", "Daniel", "Grace", "Thomas"]
PLACES = ["the office", "the station", "London", "Chicago", "the airport", "the hospital", "the library", "Boston"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
THINGS = ["your account", "the meeting", "the order", "your appointment", "the package", "your reservation", "the report"]


def digits(n: int, length: int) -> str:
    return " ".join(num2words(int(d)) for d in str(n).zfill(length))


def templated(rng: random.Random, count: int) -> list[str]:
    """Numbers, dates, times, phone numbers, questions and phone-menu commands."""
    makers = [
        lambda: f"Please call me back at {digits(rng.randrange(10**6, 10**7), 7)}.",
        lambda: f"The meeting is on {rng.choice(DAYS)}, {rng.choice(MONTHS)} {num2words(rng.randint(1, 31), to='ordinal')}.",
        lambda: f"I was born in {num2words(rng.randint(1940, 2015), to='year')}.",
        lambda: f"It costs {num2words(rng.randint(2, 999))} dollars and {num2words(rng.randint(1, 99))} cents.",
        lambda: f"The train to {rng.choice(PLACES)} leaves at {num2words(rng.randint(1, 12))} {rng.choice(['fifteen', 'thirty', 'forty five', 'o clock'])}.",
        lambda: f"Press {num2words(rng.randint(0, 9))} to {rng.choice(['repeat this message', 'speak to an operator', 'hear more options', 'leave a message', 'return to the main menu'])}.",
        lambda: f"Please enter your {rng.choice(['account number', 'extension', 'password', 'mailbox number', 'PIN'])}, followed by the pound key.",
        lambda: f"You have {num2words(rng.randint(0, 30))} new {rng.choice(['messages', 'voice messages', 'emails'])}.",
        lambda: f"{rng.choice(NAMES)} said the total was {num2words(rng.randint(11, 99999))}.",
        lambda: f"Can you tell me how to get to {rng.choice(PLACES)}?",
        lambda: f"Is {rng.choice(THINGS)} ready for {rng.choice(DAYS)}?",
        lambda: f"{rng.choice(['Set', 'Cancel', 'Move'])} an alarm for {num2words(rng.randint(1, 12))} {rng.choice(['in the morning', 'at night', 'tomorrow'])}.",
        lambda: f"Your confirmation code is {digits(rng.randrange(10**5), 5)}.",
        lambda: f"{rng.choice(NAMES)} and {rng.choice(NAMES)} will meet at {rng.choice(PLACES)} on the {num2words(rng.randint(1, 31), to='ordinal')}.",
        lambda: f"The temperature today is {num2words(rng.randint(-10, 40))} degrees.",
        lambda: f"Please hold while we transfer your call.",
        lambda: f"The number you have dialed is not in service.",
        lambda: f"Room {num2words(rng.randint(100, 999))} is on the {num2words(rng.randint(1, 20), to='ordinal')} floor.",
    ]
    return [rng.choice(makers)() for _ in range(count)]


def load_sentences(seed: int = 0, templated_count: int = 8000) -> list[str]:
    rng = random.Random(seed)
    pool = set(fortunes()) | set(wordnet_examples()) | set(templated(rng, templated_count))
    sentences = sorted(pool)
    rng.shuffle(sentences)
    return sentences


# --- broad vocabulary: prose from pinned wheels -------------------------------------------------
# Fortunes, WordNet and templates cover few everyday words: 21% of the (non-digit) tokens in the real dev
# prompts occur fewer than 5 times in those texts (" currently", " caller", " audio", " folder",
# " directory" not once), and a CTC head cannot learn a token it never hears. Encyclopedic, news
# and conversational prose raises that coverage from 78.5% to 88.0% of tokens seen 5+ times.
GENSIM = "gensim==4.4.0"  # only its test data is read; the wheel is platform-specific, so its members are pinned
GENSIM_NEWS = ("gensim/test/test_data/lee_background.cor",
               "5d78d6dafd953bbf65797bef09a9ffb9ec430583381be705f8fd460000f370fb")
GENSIM_WIKI = ("gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2",
               "a53f4648dec40467ebdcbc7a1307eddb51fe6e28e9309f6ebde81ba0d04bea2d")
CHATTERBOT = "chatterbot-corpus==1.3.3"
CHATTERBOT_SHA256 = "86de5300afb9a80826386339d3bec79c0a72eb0358abb8327e2ecef5ae0ce154"  # the whole (pure-Python) wheel


def fetch_wheel(spec: str) -> Path:
    """pip download --no-deps of one pinned wheel into the cache (once); its path."""
    from tiny_audio.weights import cache_dir

    folder = cache_dir() / "texts"
    package, version = spec.split("==")
    pattern = f"{package.replace('-', '_')}-{version}-*.whl"
    if not list(folder.glob(pattern)):
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(folder), spec]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    found = sorted(folder.glob(pattern))
    if not found:
        raise RuntimeError(f"pip download {spec} left no wheel in {folder}")
    return found[0]


def wheel_member(wheel: Path, member: str, sha256: str) -> bytes:
    data = zipfile.ZipFile(wheel).read(member)
    if hashlib.sha256(data).hexdigest() != sha256:
        raise RuntimeError(f"sha256 mismatch for {member} in {wheel.name}")
    return data


def verbalize(text: str) -> str:
    """Digits as the words a voice says: years as years ("nineteen sixteen"), other numbers plainly."""
    text = re.sub(r"\b(1[5-9]\d\d|20[0-2]\d)\b", lambda m: num2words(int(m.group()), to="year"), text)
    return re.sub(r"\b\d{1,6}\b", lambda m: num2words(int(m.group())), text)


def split_sentences(text: str) -> list[str]:
    return re.split(r"(?<=[.?!])\s+(?=[A-Z])", text.strip())


def wiki_plain_text(xml: str) -> list[str]:
    """Paragraphs of article text from a MediaWiki XML dump: links kept as their words; templates,
    references, tables, files, headings and lists dropped."""
    paragraphs = []
    for body in re.findall(r"<text[^>]*>(.*?)</text>", xml, flags=re.S):
        text = html.unescape(body)
        text = re.sub(r"<ref[^>]*/>|<ref.*?</ref>|<!--.*?-->", "", text, flags=re.S)  # refs sit before punctuation
        for _ in range(3):  # templates nest
            text = re.sub(r"\{\{[^{}]*\}\}|\{\|[^{}]*?\|\}", " ", text, flags=re.S)
        text = re.sub(r"\[\[(?:File|Image|Category):[^\]]*\]\]", " ", text)
        text = re.sub(r"\[\[(?:[^\]|]*\|)?([^\]|]*)\]\]", r"\1", text)  # [[target|words]] -> words
        text = re.sub(r"\[https?://\S+ ([^\]]*)\]|'{2,3}|<[^>]+>", lambda m: m.group(1) or "", text)
        paragraphs += [re.sub(r" {2,}", " ", p.strip()) for p in text.split("\n") if p.strip() and p.strip()[0] not in "=*#:;|!{"]
    return paragraphs


def load_broad_sentences() -> list[str]:
    """Wikipedia sample + Lee news (gensim's test data) + chatterbot conversations, cleaned as above; sorted."""
    import yaml

    from tiny_audio.weights import sha256_file

    gensim = fetch_wheel(GENSIM)
    news = wheel_member(gensim, *GENSIM_NEWS).decode("utf-8", errors="ignore").splitlines()
    wiki = wiki_plain_text(bz2.decompress(wheel_member(gensim, *GENSIM_WIKI)).decode("utf-8"))
    chat_wheel = fetch_wheel(CHATTERBOT)
    if sha256_file(chat_wheel) != CHATTERBOT_SHA256:
        raise RuntimeError(f"sha256 mismatch for {chat_wheel.name}")
    chat = []
    with zipfile.ZipFile(chat_wheel) as z:
        for name in sorted(n for n in z.namelist() if n.startswith("chatterbot_corpus/data/english/") and n.endswith(".yml")):
            for conversation in (yaml.safe_load(z.read(name)) or {}).get("conversations", []):
                chat += [turn for turn in conversation if isinstance(turn, str)]
    out = set()
    for paragraph, min_words in [(p, 4) for p in news + wiki] + [(t, 2) for t in chat]:
        for sentence in split_sentences(paragraph):
            if re.search(r"\s[.,;:?!]|\(\s*\)", sentence):
                continue  # a word removed with its markup ("with  produced annually .")
            if cleaned := clean(verbalize(sentence), min_words=min_words):
                out.add(cleaned)
    return sorted(out)


# --- vocabulary coverage: which sentences to say next -------------------------------------------
# On the real prompts, words the training texts hold 100+ times are missed 12% of the time, words
# held 10-99 times 44%, fewer than 10 times 65-95% (README, item 25): a CTC head learns a token
# from hearing it, many times, in many voices. So a new round does not draw its texts at random;
# it picks the sentences that add the most hearings of the words heard least so far.
def words_of(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+(?:'[a-z]+)?", text.lower()))


def coverage_sentences(pool: list[str], heard: list[str], count: int, common: list[str] | None = None,
                       target: int = 30, min_common: int = 3) -> list[str]:
    """``count`` sentences of ``pool``, greedily, each adding the most coverage per word spoken.

    A word's coverage is min(hearings, target) / target; hearings start from the texts in ``heard``.
    Each word's gain is weighted by how common it is in ``common`` (default: the pool), counting
    up to 50 sentences, and a word in fewer than ``min_common`` of them does not count: everyday
    words before one-off names. ``common`` should be running text (prose, quotes, conversation):
    WordNet's definitions alone would rank "herbs" and "perennial" as everyday words. A sentence's
    score only falls as others are picked, so a lazy heap finds the same order as a full rescan,
    in seconds instead of hours. Deterministic for a given pool order; a larger count only appends."""
    import heapq
    from collections import Counter

    pool = list(dict.fromkeys(pool))  # unique, first-seen order
    pool_words = [words_of(s) for s in pool]
    in_common = Counter(w for text in dict.fromkeys(pool if common is None else common) for w in words_of(text))
    hearings = Counter(w for text in heard for w in words_of(text))

    def score(k: int) -> float:
        # an integer sum: a float sum over a set depends on the set's order, which Python's string
        # hashing changes per process, and the near-ties it reorders changed the picks between runs
        gain = sum((target - hearings[w]) * min(in_common[w], 50)
                   for w in pool_words[k] if in_common[w] >= min_common and hearings[w] < target)
        return gain / (target * 50 * max(len(pool[k].split()), 1))

    heap = [(-score(k), k) for k in range(len(pool))]
    heapq.heapify(heap)
    picked = []
    while heap and len(picked) < count:
        _, k = heapq.heappop(heap)
        fresh = score(k)
        if heap and fresh < -heap[0][0]:  # stale: another sentence may now be better
            heapq.heappush(heap, (-fresh, k))
            continue
        picked.append(pool[k])
        for w in pool_words[k]:
            hearings[w] += 1
    return picked


# --- round 8: the commonest English words, said a few at a time ----------------------------------
# Round 7 could only pick among the sentences the sources hold, and they never say many everyday
# words: after it, "caller" and "directory" (ranks ~12,700 and ~7,900 in English) were in no
# training text. A CTC head learns a token from hearing it, so round 8 says every common word
# the corpus holds fewer than ``target`` times, in texts of 1-3 words: short clips, as prompts and
# commands are (the model's worst bucket on real speech is under 1.5 s).
# The list: wordfreq (pinned in requirements-train.txt), code Apache-2.0, data CC BY-SA 4.0.
COMMON_WORDS = 20000
WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


def common_words(n: int = COMMON_WORDS) -> list[str]:
    """wordfreq's ``n`` commonest English words, commonest first, less those that are not plain words
    ("n't", "3rd", "_") and single letters other than "a" and "i"."""
    from wordfreq import top_n_list

    return [w for w in top_n_list("en", n) if WORD.fullmatch(w) and (len(w) > 1 or w in ("a", "i"))]


def dictionary_spellings(path: str = "/usr/share/dict/american-english") -> dict[str, str]:
    """Debian wamerican's words (SCOWL; free licence), lowercased -> spelling: "walter" -> "Walter", and
    the lowercase one where both exist. Word lists built from web text hold forms no reader writes
    ("doesnt", "jc"); keeping only the dictionary's words leaves them out. Empty without the file."""
    try:
        lines = Path(path).read_text(encoding="utf-8", errors="ignore").split()
    except OSError:
        return {}
    spellings = {}
    for word in lines:
        if spellings.get(word.lower()) != word.lower():  # the lowercase spelling, once seen, stays
            spellings[word.lower()] = word
    return spellings


def usual_case(texts: list[str]) -> dict[str, str]:
    """Each word's commonest spelling in running text ("i" -> "I", "monday" -> "Monday"), from the words
    after a sentence's first, which is capitalized whatever it is. Ties go to the first seen."""
    from collections import Counter

    counts = Counter(w for t in texts for w in re.findall(r"[A-Za-z]+(?:'[A-Za-z]+)?", t)[1:])
    usual = {}
    for word, _ in counts.most_common():
        usual.setdefault(word.lower(), word)
    return usual


# Round 10's joins: a short function word between two of the words now and then, so a text runs on
# as speech does ("Caller the console and valid of dial.") instead of a list said word by word.
JOINERS = ("the", "and", "a", "to", "of", "in", "with", "for", "on", "or", "is", "was")


def word_phrases(words: list[str], heard: list[str], rng: random.Random, split_of, target: int = 30,
                 case: dict[str, str] | None = None, sizes: tuple = (1, 2, 3), size_weights: tuple = (0.4, 0.35, 0.25),
                 join: float = 0.0):
    """Endless texts of ``sizes`` (default 1-3) of ``words``: each pass says once, in a new random order and
    grouping, every word that ``heard`` and the passes so far hold fewer than ``target`` times. Only texts
    that ``split_of`` gives to "train" are said (the others' words wait for the next pass), so no text is
    also a dev or test one. ``join``: the chance of one of ``JOINERS`` between two words (it counts as
    heard too). Stops when every word is heard enough, or a pass says nothing."""
    from collections import Counter

    hearings = Counter(w for text in heard for w in words_of(text))
    case = case or {}
    while True:
        needed = [w for w in words if hearings[w] < target]
        rng.shuffle(needed)
        said, k = 0, 0
        while k < len(needed):
            group = needed[k : k + rng.choices(list(sizes), weights=list(size_weights))[0]]
            k += len(group)
            said_words = [case.get(w, w) for w in group]
            if join:  # drawn only when asked, so round 8's texts stay what they were
                said_words = [w if i == 0 or rng.random() >= join else f"{rng.choice(JOINERS)} {w}"
                              for i, w in enumerate(said_words)]
            text = " ".join(said_words)
            text = text[0].upper() + text[1:] + "."
            if split_of(text) != "train":
                continue
            hearings.update(words_of(text))  # the group's words, and any joins
            said += 1
            yield text
        if not said:
            return
