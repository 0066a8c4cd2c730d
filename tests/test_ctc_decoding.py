"""Joint CTC/LLM decoding: the prefix scorer alone, on hand-made CTC posteriors, then inside generate()."""

import pytest
import torch

from conftest import tone
from test_model import build
from tiny_audio.ctc_decoding import CTCPrefixScorer

BLANK, EOS, VOCAB = 0, 9, 10


def posteriors(frames: list[int], confidence: float = 0.9) -> torch.Tensor:
    """(T, V) log-probs: each frame says one token with ``confidence``, the rest shared."""
    probs = torch.full((len(frames), VOCAB), (1 - confidence) / (VOCAB - 1))
    probs[torch.arange(len(frames)), torch.tensor(frames)] = confidence
    return probs.log()


def scorer_for(frames, weight=1.0, top_k=VOCAB):
    lp = posteriors(frames)[None]  # 1, T, V

    def token_log_probs(clips, candidates):  # (n,), (n, K) -> (n, K, T)
        return lp[clips].gather(2, candidates[:, None, :].expand(-1, lp.shape[1], -1)).transpose(1, 2)

    return CTCPrefixScorer(token_log_probs, lp[:, :, BLANK], torch.tensor([len(frames)]), BLANK, EOS, weight, top_k)


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


def test_ctc_top_k_reaches_the_scorer_from_config_and_call(tiny_config):
    model, processor = build(tiny_config, generation={"max_new_tokens": 4, "num_beams": 1, "ctc_weight": 0.5, "ctc_top_k": 5})
    model.config.ctc_blank_id = 3
    made = []
    original = model.ctc_prefix_scorer
    model.ctc_prefix_scorer = lambda *args, **kwargs: made.append(original(*args, **kwargs)) or made[-1]
    batch = processor([tone(1.0)])
    model.generate(**batch)
    model.generate(**batch, ctc_top_k=2)
    assert [s.top_k for s in made] == [5, 2]
