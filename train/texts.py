"""Training sentences from offline sources: Debian fortunes and WordNet examples, plus templated numbers/dates/commands.

Every target is natural cased, punctuated text with numbers written as spoken words, so
what the TTS voice says and the label agree (num2words verbalizes digits before synthesis).
Licences: fortunes (BSD / mixed, Debian `fortunes*`), WordNet 3.0 licence (`wordnet-base`),
templates our own.
"""

import glob
import random
import re

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
