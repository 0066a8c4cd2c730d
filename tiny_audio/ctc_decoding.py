"""Joint CTC / LLM decoding: the LLM writes the transcript, the projector's own CTC scores keep it on the audio.

The CTC head needs no extra weights: it scores each projector output against the LLM's token
embeddings (``ASRModel.ctc_logits``), the same head the projector was warmed up with. At each
decoding step the LLM's top-k next tokens are re-scored as

    (1 - w) * log p_LLM(token | prefix) + w * [log p_CTC(prefix + token ...) - log p_CTC(prefix ...)]

where p_CTC(g ...) is the CTC prefix probability of g (Watanabe et al., "Hybrid CTC/Attention
Architecture for End-to-End Speech Recognition", 2017; the recursion of ESPnet's CTCPrefixScore).
Ending the transcript is scored with the full-sequence CTC probability, so the LLM stops where
the audio stops instead of continuing with fluent text that is not in it. Written by hand
because transformers has no CTC prefix scorer; it is a LogitsProcessor, so greedy and beam
search in ``generate`` both use it (states are cached per prefix, so beams may reorder freely).
"""

import torch
from transformers import LogitsProcessor

NEG_INF = float("-inf")


class CTCPrefixScorer(LogitsProcessor):
    def __init__(self, ctc_log_probs, blank_log_probs: torch.Tensor, lengths: torch.Tensor, blank_id: int,
                 eos_token_id: int, weight: float, top_k: int):
        """``ctc_log_probs(rows, candidates)`` -> (N, K, T) log-probs of candidate tokens per frame;
        ``blank_log_probs`` (N, T); ``lengths`` (N,) valid frames per row (rows = clips x beams).

        Only the LLM's ``top_k`` are candidates (``generation.ctc_top_k``, where its default lives: 64
        instead of 8 took the shipped weights from 42.91% to 39.96% WER on 305 real prompts, README
        item 16). Adding the tokens the CTC head itself ranks first or second at any frame made it
        worse (real speech, 60 prompts: 54.9% -> 56.3% WER)."""
        self.token_log_probs = ctc_log_probs
        self.blank = blank_log_probs.float()
        self.blank_id = blank_id
        self.lengths = lengths.long()
        self.eos = eos_token_id
        self.weight = weight
        self.top_k = top_k
        frames = self.blank.shape[1]
        self.valid = torch.arange(frames, device=self.blank.device) < self.lengths[:, None]  # N, T
        # The empty prefix: all blanks so far (r_b), nothing emitted (r_n), prefix score 0.
        empty_b = torch.cumsum(self.blank.masked_fill(~self.valid, 0.0), dim=1)
        self.states = {}  # (row, prefix tuple) -> (r_n (T,), r_b (T,), log psi, last token)
        self.empty = [(torch.full((frames,), NEG_INF), empty_b[i], 0.0, None) for i in range(len(self.lengths))]

    def _state(self, row: int, prefix: tuple):
        return self.empty[row] if not prefix else self.states.get((row, prefix))

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        llm = scores.float().log_softmax(-1)
        rows = input_ids.shape[0]
        beams = rows // len(self.lengths)
        prefixes = [tuple(r) for r in input_ids.tolist()]
        states = [self._state(i // beams, p) for i, p in enumerate(prefixes)]
        known = [i for i, s in enumerate(states) if s is not None]  # finished rows continue with pads: leave them
        if not known:
            return scores
        clip = torch.tensor([i // beams for i in known])
        candidates = llm[known].topk(self.top_k, dim=-1).indices  # n, K
        r_n = torch.stack([states[i][0] for i in known])  # n, T
        r_b = torch.stack([states[i][1] for i in known])
        psi = torch.tensor([states[i][2] for i in known])
        last = torch.tensor([-1 if states[i][3] is None else states[i][3] for i in known])
        emitted = torch.tensor([len(prefixes[i]) for i in known])

        x = self.token_log_probs(clip, candidates)  # n, K, T
        x = x.masked_fill(~self.valid[clip][:, None, :], NEG_INF)
        blank = self.blank[clip].masked_fill(~self.valid[clip], NEG_INF)  # n, T
        phi = torch.logaddexp(r_n, r_b)[:, None, :].expand_as(x).clone()  # n, K, T
        repeat = candidates == last[:, None]  # a repeated token needs a blank in between
        phi[repeat] = r_b[:, None, :].expand_as(x)[repeat]
        frames = x.shape[-1]
        new_n = torch.full_like(x, NEG_INF)
        new_b = torch.full_like(x, NEG_INF)
        first = emitted == 0
        new_n[first, :, 0] = x[first, :, 0]
        for t in range(1, frames):
            new_n[..., t] = torch.logaddexp(new_n[..., t - 1], phi[..., t - 1]) + x[..., t]
            new_b[..., t] = torch.logaddexp(new_n[..., t - 1], new_b[..., t - 1]) + blank[:, None, t]
        # psi(g + c): every way the first t frames end with c just emitted, summed over t.
        paths = torch.cat([new_n[..., :1], phi[..., :-1] + x[..., 1:]], dim=-1)
        new_psi = torch.logsumexp(paths, dim=-1)  # n, K
        end = (self.lengths[clip] - 1).clamp(min=0)
        full = torch.logaddexp(r_n, r_b).gather(1, end[:, None]).squeeze(1)  # p_CTC(g is everything): ending here

        ctc_delta = torch.nan_to_num(new_psi - psi[:, None], nan=NEG_INF)  # -inf - -inf: an impossible prefix
        ctc_delta = ctc_delta.masked_fill(candidates == self.blank_id, NEG_INF)  # the blank is never a label
        combined = (1 - self.weight) * llm[known].gather(1, candidates) + self.weight * ctc_delta
        eos_score = (1 - self.weight) * llm[known, self.eos] + self.weight * torch.nan_to_num(full - psi, nan=NEG_INF)

        out = scores.clone().float()
        index = torch.tensor(known)
        rescored = out[index].fill_(NEG_INF)
        rescored.scatter_(1, candidates, combined)
        rescored[:, self.eos] = eos_score  # ending is always an option
        lost = torch.isinf(rescored.max(dim=1).values)  # CTC rules out every candidate: let the LLM alone decide
        out[index] = torch.where(lost[:, None], out[index], rescored)
        for j, i in enumerate(known):
            row = i // beams
            for k, token in enumerate(candidates[j].tolist()):
                if token != self.eos:
                    self.states[(row, prefixes[i] + (token,))] = (new_n[j, k], new_b[j, k], new_psi[j, k].item(), token)
        return out.to(scores.dtype)
