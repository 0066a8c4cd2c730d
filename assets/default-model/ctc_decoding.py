"""Joint CTC / LLM decoding: the LLM writes the transcript, CTC heads over the audio keep it on the audio.

At each decoding step the LLM's top-k next tokens are re-scored as

    (1 - w) * log p_LLM(token | prefix) + sum over heads h of  w_h * [log p_h(prefix + token ...) - log p_h(prefix ...)]

(w = the heads' weights together), where p_h(g ...) is head h's CTC prefix probability of g
(Watanabe et al., "Hybrid CTC/Attention Architecture for End-to-End Speech Recognition", 2017; the
recursion of ESPnet's CTCPrefixScore). A head's labels need not be the LLM's tokens:

- the word head (``ASRModel.ctc_logits``) scores each projector output against the LLM's token
  embeddings: a token is one label;
- a spelling head scores letters: a token is the letters it adds to the transcript's spelling
  (``spelling_labels``), none to several, so it can score words it was never trained on.

Ending the transcript is scored with the full-sequence CTC probability, so the LLM stops where the
audio stops instead of continuing with fluent text that is not in it. Written by hand because
transformers has no CTC prefix scorer; it is a LogitsProcessor, so greedy and beam search in
``generate`` both use it (states are cached per prefix, so beams may reorder freely).
"""

import re
from typing import Callable

import torch
from transformers import LogitsProcessor

NEG_INF = float("-inf")
LETTERS = " abcdefghijklmnopqrstuvwxyz'"  # a spelling head's labels: index + 1; 0 is its blank
SPOKEN_DIGITS = "zero one two three four five six seven eight nine".split()
# What a transcript may hold where the spelling head scores it: letters, digits (said one by one),
# and punctuation that is not spoken. Anything else (new lines, symbols, markup) it cannot hear.
SPEAKABLE = re.compile(r"[A-Za-z0-9'’ .,?!;:\"-]*")


def spell(text: str) -> str:
    """What a spelling head writes for ``text``: lower-case letters and apostrophes, words one space apart."""
    text = re.sub(r"[0-9]", lambda digit: f" {SPOKEN_DIGITS[int(digit.group())]} ", text.replace("’", "'"))
    return " ".join(re.sub(r"[^a-z' ]+", " ", text.lower().replace("-", " ")).split())


def letter_ids(spelled: str) -> list[int]:
    """A spelling head's labels for letters as ``spell`` writes them."""
    return [LETTERS.index(c) + 1 for c in spelled]


def spelling_labels(text: str) -> list[int]:
    return letter_ids(spell(text))


def spelling_of(token_texts: list[str]) -> Callable:
    """A spelling head's ``labels_of``: the letters a token adds to the transcript's spelling (a space
    first where it starts a word; none for punctuation), or None where it holds what cannot be said."""

    def labels_of(text: str, token: int):
        said = token_texts[token] if token < len(token_texts) else ""
        if not SPEAKABLE.fullmatch(said):
            return None, text + said
        before, after = spell(text), spell(text + said)
        return letter_ids(after[len(before) :]), text + said

    return labels_of


def extend(r_n, r_b, psi, last, empty, labels, count, x, blank):
    """CTC prefix extension of each row's prefix by each candidate's ``count`` labels at once.

    r_n, r_b (n, T): log-probs that frames 0..t hold exactly the prefix, ending in a label / a blank;
    psi (n,): its prefix score; last (n,): its last label (-1: none); empty (n,): no labels yet;
    labels (n, K, L), count (n, K): each candidate's labels (padded); x (n, K, L, T): their log-probs
    per frame (-inf past a clip's end); blank (n, T). Returns the extended prefixes' (r_n, r_b, psi,
    last). A candidate of no labels keeps its prefix's state."""
    n, k, width, frames = x.shape
    prev = torch.cat([last[:, None, None].expand(n, k, 1), labels[..., :-1]], dim=2)
    same = labels == prev  # a repeated label needs a blank in between
    new_n = torch.full_like(x, NEG_INF)
    new_b = torch.full_like(x, NEG_INF)
    new_n[empty, :, 0, 0] = x[empty, :, 0, 0]
    scores = new_n[..., 0].clone()  # psi of each label count: every way its last label is first emitted at t
    for t in range(1, frames):
        before_n = torch.cat([r_n[:, None, None, t - 1].expand(n, k, 1), new_n[:, :, :-1, t - 1]], dim=2)
        before_b = torch.cat([r_b[:, None, None, t - 1].expand(n, k, 1), new_b[:, :, :-1, t - 1]], dim=2)
        phi = torch.where(same, before_b, torch.logaddexp(before_n, before_b))
        emit = phi + x[..., t]
        scores = torch.logaddexp(scores, emit)
        new_n[..., t] = torch.logaddexp(new_n[..., t - 1] + x[..., t], emit)
        new_b[..., t] = torch.logaddexp(new_n[..., t - 1], new_b[..., t - 1]) + blank[:, None, None, t]
    at = (count - 1).clamp(min=0)
    none = count == 0
    pick = at[..., None, None].expand(n, k, 1, frames)
    out_n = torch.where(none[..., None], r_n[:, None], new_n.gather(2, pick).squeeze(2))
    out_b = torch.where(none[..., None], r_b[:, None], new_b.gather(2, pick).squeeze(2))
    out_psi = torch.where(none, psi[:, None], scores.gather(2, at[..., None]).squeeze(2))
    out_last = torch.where(none, last[:, None], labels.gather(2, at[..., None]).squeeze(2))
    return out_n, out_b, out_psi, out_last


class CTCHead:
    """One CTC head's view of a batch of clips, and its prefix states during decoding."""

    def __init__(self, label_log_probs: Callable, blank_log_probs: torch.Tensor, lengths: torch.Tensor, weight: float,
                 labels_of: Callable | None = None, boundary: int | None = None, proposals: list | None = None):
        """``label_log_probs(clips, labels)``: (n,), (n, K, L) -> (n, K, L, T) log-probs of labels per frame;
        ``blank_log_probs`` (N, T); ``lengths`` (N,) valid frames per clip; ``labels_of(text, token)`` ->
        (the labels ``token`` adds after the transcript ``text`` (None: it cannot be said), the new text);
        None: each token is one label. ``boundary``: the label between words (a spelling head's space); a
        token of no labels (punctuation) scores as a word ending there: next the boundary, or the end."""
        self.label_log_probs = label_log_probs
        self.blank = blank_log_probs.float()
        self.lengths = lengths.long()
        self.weight = weight
        self.labels_of = labels_of
        self.boundary = boundary
        self.proposals = proposals  # per clip, tokens the head offers as candidates beside the LLM's
        frames = self.blank.shape[1]
        self.valid = torch.arange(frames, device=self.blank.device) < self.lengths[:, None]  # N, T
        # The empty prefix: all blanks so far (r_b), nothing emitted (r_n), prefix score 0.
        empty_b = torch.cumsum(self.blank.masked_fill(~self.valid, 0.0), dim=1)
        self.states = {}  # (clip, prefix tuple) -> (r_n (T,), r_b (T,), log psi, last label, text)
        self.empty = [(torch.full((frames,), NEG_INF), empty_b[i], 0.0, -1, "") for i in range(len(self.lengths))]

    def state(self, clip: int, prefix: tuple):
        return self.empty[clip] if not prefix else self.states.get((clip, prefix))

    def score(self, clips: list[int], prefixes: list[tuple], candidates: torch.Tensor):
        """For each row (a clip's prefix) and candidate token: log p(prefix + token ...) - log p(prefix ...),
        and the score of ending there; remembers the extended prefixes' states."""
        states = [self.state(c, p) for c, p in zip(clips, prefixes)]
        clip = torch.tensor(clips)
        spelled = [[self.labels_of(s[4], t) if self.labels_of else ([t], "") for t in row]
                   for s, row in zip(states, candidates.tolist())]
        impossible = torch.tensor([[lab is None for lab, _ in row] for row in spelled])
        spelled = [[(lab or [], text) for lab, text in row] for row in spelled]
        width = max(1, max(len(lab) for row in spelled for lab, _ in row))
        labels = torch.tensor([[lab + [0] * (width - len(lab)) for lab, _ in row] for row in spelled])
        count = torch.tensor([[len(lab) for lab, _ in row] for row in spelled])
        # A token of no labels would cost nothing, so putting off every word would be free: score it as the
        # current word ending here (the boundary label next, or the transcript ending), and keep the state.
        silent = (count == 0) & ~impossible if self.boundary is not None else torch.zeros_like(impossible)
        labels[..., 0] = labels[..., 0].masked_fill(silent, self.boundary or 0)
        r_n = torch.stack([s[0] for s in states])
        r_b = torch.stack([s[1] for s in states])
        psi = torch.tensor([s[2] for s in states])
        last = torch.tensor([s[3] for s in states])
        empty = last < 0  # no labels yet: the first may be said at frame 0
        x = self.label_log_probs(clip, labels).float().masked_fill(~self.valid[clip][:, None, None, :], NEG_INF)
        blank = self.blank[clip].masked_fill(~self.valid[clip], NEG_INF)
        new_n, new_b, new_psi, new_last = extend(r_n, r_b, psi, last, empty, labels, count + silent.long(), x, blank)
        end = (self.lengths[clip] - 1).clamp(min=0)
        full = torch.logaddexp(r_n, r_b).gather(1, end[:, None]).squeeze(1)  # p_CTC(prefix is everything)
        new_psi = torch.where(silent, torch.logaddexp(new_psi, full[:, None]), new_psi)
        new_n = torch.where(silent[..., None], r_n[:, None], new_n)
        new_b = torch.where(silent[..., None], r_b[:, None], new_b)
        new_last = torch.where(silent, last[:, None], new_last)
        delta = torch.nan_to_num(new_psi - psi[:, None], nan=NEG_INF)  # -inf - -inf: an impossible prefix
        kept_psi = torch.where(silent, psi[:, None], new_psi)
        for j, (c, p) in enumerate(zip(clips, prefixes)):
            for i, token in enumerate(candidates[j].tolist()):
                self.states[(c, p + (token,))] = (new_n[j, i], new_b[j, i], kept_psi[j, i].item(), new_last[j, i].item(),
                                                  spelled[j][i][1])
        return delta.masked_fill(impossible, NEG_INF), torch.nan_to_num(full - psi, nan=NEG_INF)


class CTCPrefixScorer(LogitsProcessor):
    def __init__(self, heads: list[CTCHead], eos_token_id: int, top_k: int, ruled_out: list[int] = ()):
        """Only the LLM's ``top_k`` are candidates (``generation.ctc_top_k``, where its default lives: 64
        instead of 8 took the shipped weights from 42.91% to 39.96% WER on 305 real prompts, README
        item 16). A head may add its own candidates (``CTCHead.proposals``, ``generation.ctc_propose``):
        with a weak head that made it worse (60 real prompts: 54.9% -> 56.3% WER); with the context
        head, the LLM's top 64 often lack a word the head hears (README item 34). ``ruled_out``:
        tokens never written (the word head's blank)."""
        self.heads = heads
        self.eos = eos_token_id
        self.top_k = top_k
        self.ruled_out = list(ruled_out)
        self.clips = len(heads[0].lengths)

    def with_proposals(self, candidates: torch.Tensor, clips: list[int]) -> torch.Tensor:
        """The LLM's candidates plus the tokens the heads propose for each row's clip, padded with each
        row's first candidate to a rectangle."""
        offered = [h.proposals for h in self.heads if h.proposals is not None]
        if not offered:
            return candidates
        rows = []
        for row, clip in zip(candidates, clips):
            extra = torch.cat([p[clip] for p in offered]).unique()
            rows.append(torch.cat([row, extra[~torch.isin(extra, row)]]))
        width = max(len(r) for r in rows)
        return torch.stack([torch.cat([r, r[:1].expand(width - len(r))]) for r in rows])

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        llm = scores.float().log_softmax(-1)
        beams = input_ids.shape[0] // self.clips
        prefixes = [tuple(r) for r in input_ids.tolist()]
        # finished rows continue with pads: leave them
        known = [i for i, p in enumerate(prefixes) if all(h.state(i // beams, p) is not None for h in self.heads)]
        if not known:
            return scores
        candidates = llm[known].topk(self.top_k, dim=-1).indices  # n, K
        candidates = self.with_proposals(candidates, [i // beams for i in known])
        weight = sum(h.weight for h in self.heads)
        combined = (1 - weight) * llm[known].gather(1, candidates)
        eos_score = (1 - weight) * llm[known, self.eos]
        for head in self.heads:
            delta, end = head.score([i // beams for i in known], [prefixes[i] for i in known], candidates)
            combined = combined + head.weight * delta
            eos_score = eos_score + head.weight * end
        for token in self.ruled_out:
            combined = combined.masked_fill(candidates == token, NEG_INF)

        out = scores.clone().float()
        # a candidate listed twice (padding) has the same score twice, so the scatter below is still exact
        index = torch.tensor(known)
        rescored = out[index].fill_(NEG_INF)
        rescored.scatter_(1, candidates, combined)
        rescored[:, self.eos] = eos_score  # ending is always an option
        lost = torch.isinf(rescored.max(dim=1).values)  # CTC rules out every candidate: let the LLM alone decide
        out[index] = torch.where(lost[:, None], out[index], rescored)
        return out.to(scores.dtype)
