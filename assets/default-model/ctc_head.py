"""The CTC head's training scores: log-probabilities of a few tokens, normalized over all of them.

CTC reads only the batch's transcript tokens and the blank from each frame's log-softmax, but the
normalizer runs over the whole vocabulary (49,152 tokens for SmolLM2). Written plainly, that is a
(frames x vocabulary) float32 log-softmax and a gradient of the same size: ~0.8 GB each for a
400-second batch, most of a CTC training step on a CPU. Here the scores are made in chunks of
rows and thrown away: the forward keeps two log-normalizers per frame, the backward makes each
chunk's scores again (one more matmul, cheap in bf16) to form its softmax.

The output has one column more than asked for: the log-probability of every other token
together, so each row is a whole distribution. That matters because torch's ``ctc_loss`` returns,
as its input's gradient, the gradient of the scores *before* a log-softmax (probability minus
occupancy): right only when its input is a log-softmax over all classes. Given whole rows
passed through ``log_softmax`` (an identity on them), the gradient reaching the tokens is exact.
"""

import torch

CHUNK_BYTES = 24 * 2**20  # one chunk's float32 scores: cache-sized, not a whole batch


class _LogProbsAt(torch.autograd.Function):
    @staticmethod
    def forward(ctx, queries, keys, columns, dtype):
        with torch.autocast(queries.device.type, enabled=False):
            q, keys = queries.to(dtype), keys.to(dtype)
            chunk = max(1, CHUNK_BYTES // (4 * keys.shape[0]))
            picked, rest_norm = [], []
            for s in range(0, len(q), chunk):
                scores = (q[s : s + chunk] @ keys.T).float()
                picked.append(scores[:, columns])
                scores[:, columns] = -torch.inf
                rest_norm.append(scores.logsumexp(-1))
            picked, rest_norm = torch.cat(picked), torch.cat(rest_norm)
            norm = torch.logaddexp(rest_norm, picked.logsumexp(-1))
            out = torch.cat([picked - norm[:, None], (rest_norm - norm)[:, None]], dim=1)
        # (when the columns are the whole table there is no rest: its log-normalizer is -inf)
        ctx.save_for_backward(q, keys, columns, rest_norm.nan_to_num(neginf=0.0), out)
        ctx.chunk = chunk
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, keys, columns, rest_norm, out = ctx.saved_tensors
        total = grad_out.sum(-1, keepdim=True)
        # d out / d scores: at a picked token, its own gradient minus its probability times the
        # total; at any other token j, p(j | rest) * (gradient of the rest - p(rest) * total)
        picked_grad = grad_out[:, :-1] - out[:, :-1].exp() * total
        rest_grad = grad_out[:, -1:] - out[:, -1:].exp() * total
        grad = torch.empty(q.shape, dtype=torch.float32, device=q.device)
        with torch.autocast(q.device.type, enabled=False):
            for s in range(0, len(q), ctx.chunk):
                rows = slice(s, s + ctx.chunk)
                g = (q[rows] @ keys.T).float()
                g[:, columns] = -torch.inf
                g.sub_(rest_norm[rows, None]).exp_().mul_(rest_grad[rows])
                g[:, columns] = picked_grad[rows]
                grad[rows] = (g.to(q.dtype) @ keys).float()
        return grad, None, None, None


def log_probs_at(queries: torch.Tensor, keys: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """``(queries @ keys.T).log_softmax(-1)`` at ``columns``, plus a last column for all the others.

    queries (N, D) take gradients, keys (V, D) do not (the frozen token embeddings), columns (C,)
    are distinct indices into keys; returns (N, C + 1) float32. The matmuls run in the autocast
    dtype when autocast is on (bf16 here), as the plain version's would.
    """
    device = queries.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else queries.dtype
    return _LogProbsAt.apply(queries, keys.detach(), columns, dtype)
