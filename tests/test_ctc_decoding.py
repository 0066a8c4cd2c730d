"""Joint CTC/LLM decoding: the prefix scorer alone, on hand-made CTC posteriors, then inside generate()."""

import itertools

import pytest
import torch

from conftest import tone
from test_model import build
from tiny_audio import modeling
from tiny_audio.ctc_decoding import LETTERS, NEG_INF, SPEAKABLE, CTCHead, CTCPrefixScorer, extend, spelling_of

BLANK, EOS, VOCAB = 0, 9, 10


def posteriors(frames: list[int], confidence: float = 0.9) -> torch.Tensor:
    """(T, V) log-probs: each frame says one token with ``confidence``, the rest shared."""
    probs = torch.full((len(frames), VOCAB), (1 - confidence) / (VOCAB - 1))
    probs[torch.arange(len(frames)), torch.tensor(frames)] = confidence
    return probs.log()


def scorer_for(frames, weight=1.0, top_k=VOCAB, proposals=None):
    lp = posteriors(frames)[None]  # 1, T, V

    def label_log_probs(clips, labels):  # (n,), (n, K, 1) -> (n, K, 1, T): each token is one label
        return lp[clips].gather(2, labels[..., 0][:, None, :].expand(-1, lp.shape[1], -1)).transpose(1, 2)[:, :, None]

    head = CTCHead(label_log_probs, lp[:, :, BLANK], torch.tensor([len(frames)]), weight, proposals=proposals)
    return CTCPrefixScorer([head], EOS, top_k, ruled_out=[BLANK])


def decode(scorer, llm_scores=None, steps=8) -> list[int]:
    ids = torch.zeros((1, 0), dtype=torch.long)
    for _ in range(steps):
        scores = torch.zeros(1, VOCAB) if llm_scores is None else llm_scores.clone()
        token = int(scorer(ids, scores).argmax(-1))
        if token == EOS:
            return ids[0].tolist()
        ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
    raise AssertionError(f"no end after {steps} steps: {ids[0].tolist()}")


@pytest.mark.parametrize("frames, expected", [
    ([5, BLANK, 7, BLANK, BLANK, BLANK], [5, 7]),
    ([5, 5, 5, BLANK, 7, 7], [5, 7]),  # repeats without a blank collapse
    ([5, BLANK, 5, BLANK, BLANK, BLANK], [5, 5]),  # a blank between repeats keeps both
    ([BLANK, BLANK, 3, BLANK, 4, 2], [3, 4, 2]),
])
def test_ctc_alone_decodes_the_best_path(frames, expected):
    assert decode(scorer_for(frames)) == expected


def test_ctc_overrules_a_mild_llm_preference_and_ends_the_transcript():
    llm = torch.zeros(1, VOCAB)
    llm[0, 3] = 1.0  # the LLM mildly prefers token 3, and never wants to stop
    llm[0, EOS] = -5.0
    assert decode(scorer_for([5, BLANK, 7, BLANK], weight=0.85), llm) == [5, 7]
    with pytest.raises(AssertionError, match="no end"):  # the LLM alone would go on writing 3s
        decode(scorer_for([5, BLANK, 7, BLANK], weight=0.0), llm, steps=4)


def test_candidates_outside_the_llm_top_k_are_ruled_out():
    llm = torch.zeros(1, VOCAB)
    llm[0, [1, 2, 3]] = 2.0  # top-3 of the LLM: 1, 2, 3; the audio says 5
    out = scorer_for([5, BLANK], weight=0.5, top_k=3)(torch.zeros((1, 0), dtype=torch.long), llm)
    assert torch.isinf(out[0, 5]) and set(torch.isfinite(out[0]).nonzero().flatten().tolist()) == {1, 2, 3, EOS}


def test_tokens_the_head_proposes_join_the_llm_top_k():
    llm = torch.zeros(1, VOCAB)
    llm[0, [1, 2, 3]] = 2.0  # the LLM's top 3 leave out the 5 the audio says
    scorer = scorer_for([5, BLANK, 7, BLANK], weight=0.5, top_k=3, proposals=[torch.tensor([5, 7])])
    out = scorer(torch.zeros((1, 0), dtype=torch.long), llm)
    assert set(torch.isfinite(out[0]).nonzero().flatten().tolist()) == {1, 2, 3, 5, 7, EOS}
    assert decode(scorer, llm) == [5, 7]
    assert decode(scorer_for([5, BLANK, 7, BLANK], weight=0.5, top_k=3), llm) != [5, 7]


def test_ctc_propose_offers_the_heads_top_tokens(tiny_config, monkeypatch):
    model, processor = build(tiny_config, generation={"max_new_tokens": 4, "num_beams": 1, "ctc_weight": 0.5})
    model.config.ctc_blank_id = 3
    made = []
    original = modeling.CTCPrefixScorer
    monkeypatch.setattr(modeling, "CTCPrefixScorer", lambda *args, **kwargs: made.append(original(*args, **kwargs)) or made[-1])
    batch = processor([tone(1.0), tone(0.5, freq=300.0)])
    model.generate(**batch)
    with pytest.raises(ValueError, match="tokenizer"):
        model.generate(**batch, ctc_propose=2)
    model.generate(**batch, ctc_propose=2, tokenizer=processor.tokenizer)
    assert made[0].heads[0].proposals is None
    proposals = made[-1].heads[0].proposals
    frames = made[-1].heads[0].lengths.tolist()
    texts = processor.tokenizer.batch_decode([[t] for t in torch.cat(proposals).tolist()])
    assert len(proposals) == 2 and all(len(p) <= 2 * n for p, n in zip(proposals, frames))
    assert 3 not in torch.cat(proposals).tolist()  # never the blank
    assert texts and all(any(c.isalpha() for c in t) for t in texts)  # only tokens with letters


def test_generate_with_ctc_weight_matches_one_by_one(tiny_config):
    model, processor = build(tiny_config, generation={"max_new_tokens": 8, "num_beams": 1, "ctc_weight": 0.5})
    model.config.ctc_blank_id = 3
    clips = [tone(1.0), tone(2.0, freq=300.0)]
    batched = model.generate(**processor(clips))
    for i, clip in enumerate(clips):
        alone = model.generate(**processor([clip]))
        width = alone.shape[1]
        assert torch.equal(batched[i, :width], alone[0])
    plain = model.generate(**processor(clips), ctc_weight=0.0)
    assert plain.shape[0] == 2


def test_ctc_top_k_reaches_the_scorer_from_config_and_call(tiny_config, monkeypatch):
    model, processor = build(tiny_config, generation={"max_new_tokens": 4, "num_beams": 1, "ctc_weight": 0.5, "ctc_top_k": 5})
    model.config.ctc_blank_id = 3
    made = []
    original = modeling.CTCPrefixScorer
    monkeypatch.setattr(modeling, "CTCPrefixScorer", lambda *args, **kwargs: made.append(original(*args, **kwargs)) or made[-1])
    batch = processor([tone(1.0)])
    model.generate(**batch)
    model.generate(**batch, ctc_top_k=2)
    assert [s.top_k for s in made] == [5, 2]


def brute_force(log_probs: torch.Tensor, labels: list[int]) -> tuple[float, float]:
    """log p(the labels start the transcript), log p(they are all of it): every path of (T, C) summed."""
    starts, whole = [], []
    for path in itertools.product(range(log_probs.shape[1]), repeat=log_probs.shape[0]):
        said = [c for i, c in enumerate(path) if c != BLANK and (i == 0 or c != path[i - 1])]
        score = log_probs[torch.arange(len(path)), torch.tensor(path)].sum()
        if said[: len(labels)] == labels:
            starts.append(score)
            if said == labels:
                whole.append(score)
    return torch.stack(starts).logsumexp(0).item(), torch.stack(whole).logsumexp(0).item() if whole else NEG_INF


@pytest.mark.parametrize("prefix, added", [
    ([], [1]), ([], [1, 1]), ([2], [2]), ([1], [2, 3]), ([1, 2], [2]), ([], [1, 2, 1]), ([3], []),
])
def test_extending_by_several_labels_sums_every_path(prefix, added):
    torch.manual_seed(len(prefix) * 7 + len(added))
    lp = torch.randn(5, 4).log_softmax(-1)  # 5 frames, blank + 3 labels: 4^5 paths

    def grow(state, labels):  # one candidate of these labels after the state's prefix
        r_n, r_b, psi, last = state
        width = max(1, len(labels))
        padded = torch.tensor([labels + [0] * (width - len(labels))])[None]  # 1, 1, L
        out = extend(r_n, r_b, psi, last, last < 0, padded, torch.tensor([[len(labels)]]), lp.T[padded], lp[None, :, BLANK])
        return tuple(o[:, 0] for o in out)

    empty = (torch.full((1, 5), NEG_INF), lp[:, BLANK].cumsum(0)[None], torch.zeros(1), torch.tensor([-1]))
    r_n, r_b, psi, last = grow(grow(empty, prefix), added)
    starts, whole = brute_force(lp, prefix + added)
    assert psi.item() == pytest.approx(starts, abs=1e-4)
    assert torch.logaddexp(r_n[0, -1], r_b[0, -1]).item() == pytest.approx(whole, abs=1e-4)
    assert last.item() == (prefix + added or [-1])[-1]


def test_spelling_of_a_token_is_the_letters_it_adds():
    texts = ["", " Cat", "s", ",", " 2", "\n", "’s", "-up"]
    labels_of = spelling_of(texts)
    letters = lambda labels: "".join(LETTERS[i - 1] for i in labels)  # noqa: E731
    assert letters(labels_of("", 1)[0]) == "cat"  # no space before the first word
    assert letters(labels_of(" Cat", 1)[0]) == " cat" and letters(labels_of(" Cat", 2)[0]) == "s"
    assert labels_of(" Cats", 3) == ([], " Cats,")  # punctuation says nothing
    assert letters(labels_of(" Cats,", 4)[0]) == " two"  # digits are said one by one
    assert labels_of(" Cats", 5)[0] is None  # a new line cannot be heard
    assert letters(labels_of(" cat", 6)[0]) == "'s" and letters(labels_of(" set", 7)[0]) == " up"
    assert labels_of("", 0) == ([], "")  # special tokens decode to nothing


def test_a_spelling_head_picks_the_tokens_that_spell_what_it_hears():
    texts = ["", "ca", "b", "c", "a", "dog", " b", "\n", ".", "cab"]
    letter = {c: LETTERS.index(c) + 1 for c in "abcdgo"}
    frames = [letter["c"], letter["a"], 0, letter["b"], 0, 0]
    probs = torch.full((len(frames), len(LETTERS) + 1), 0.02)
    probs[torch.arange(len(frames)), torch.tensor(frames)] = 0.9
    lp = (probs / probs.sum(-1, keepdim=True)).log()[None]  # 1, T, letters + blank

    def label_log_probs(clips, labels):  # (n,), (n, K, L) -> (n, K, L, T)
        n, k, width = labels.shape
        return lp[clips].transpose(1, 2).gather(1, labels.reshape(n, k * width, 1).expand(-1, -1, lp.shape[1])).reshape(n, k, width, -1)

    head = CTCHead(label_log_probs, lp[:, :, 0], torch.tensor([len(frames)]), 0.9, spelling_of(texts), boundary=1)
    scorer = CTCPrefixScorer([head], eos_token_id=0, top_k=len(texts))
    ids = torch.zeros((1, 0), dtype=torch.long)
    for _ in range(6):
        llm = torch.zeros(1, len(texts))
        llm[0, 7] = 3.0  # the LLM would rather write a new line, which cannot be heard
        llm[0, 0] = 5.0 if ids.shape[1] and ids[0, -1] == 8 else -3.0  # it stops after a full stop, only
        token = int(scorer(ids, llm).argmax(-1))
        if token == 0:
            break
        ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
    # a full stop says nothing, but it ends a word: not where the audio is inside one
    assert token == 0 and "".join(texts[i] for i in ids[0].tolist()) in ("cab", "cab.")


def test_generate_with_a_spelling_head(tiny_config, tmp_path):
    torch.manual_seed(0)
    shape = {"downsample_rate": 2, "hidden_dim": 16, "context": 1}
    model, processor = build(tiny_config, generation={"max_new_tokens": 6, "num_beams": 1, "ctc_weight": 0.3,
                                                      "spelling_weight": 0.4}, spelling_head=shape)
    model.config.ctc_blank_id = 3
    clips = [tone(1.0), tone(1.5, freq=300.0)]
    batch = processor(clips)
    with pytest.raises(ValueError, match="tokenizer"):
        model.generate(**batch)
    batched = model.generate(**batch, tokenizer=processor.tokenizer)
    for i, clip in enumerate(clips):
        alone = model.generate(**processor([clip]), tokenizer=processor.tokenizer)
        assert torch.equal(batched[i, : alone.shape[1]], alone[0])
    frames, lengths = model.encode(batch["input_features"], batch["feature_lengths"])
    log_probs, positions = model.spelling_log_probs(frames, lengths)  # 2 frames a position, a partial last one too
    assert torch.equal(positions, (lengths + 1) // 2) and log_probs.shape[:2] == (2, int(positions.max()))
    texts = model.token_texts(processor.tokenizer)
    for row in batched.tolist():  # whatever it writes can be said
        assert all(SPEAKABLE.fullmatch(texts[t]) for t in row if t < len(texts))
    model.save_pretrained(tmp_path)
    again = type(model).from_pretrained(tmp_path)
    assert again.parameter_counts()["spelling_head"] == model.parameter_counts()["spelling_head"] > 0
    torch.testing.assert_close(again.spelling_head.linear_2.weight, model.spelling_head.linear_2.weight)


def test_every_beam_of_a_clip_gets_its_proposals():
    llm = torch.zeros(2, VOCAB)
    llm[:, [1, 2, 3]] = 2.0
    scorer = scorer_for([5, BLANK, 7, BLANK], weight=0.5, top_k=3, proposals=[torch.tensor([5, 7])])
    scorer(torch.zeros((1, 0), dtype=torch.long), llm[:1])  # step 1 remembers the prefixes [1] and [5]
    out = scorer(torch.tensor([[1], [5]]), llm)  # two beams of the one clip
    for row in out:
        assert set(torch.isfinite(row).nonzero().flatten().tolist()) == {1, 2, 3, 5, 7, EOS}
    assert int(out[1].argmax()) == 7  # after 5, the head's 7
