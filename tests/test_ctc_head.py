"""The chunked CTC scores equal the plain log-softmax they replace, in value and in gradient."""

import pytest
import torch
from torch import nn

from tiny_audio import ctc_head
from tiny_audio.ctc_head import log_probs_at


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(ctc_head, "CHUNK_BYTES", 4 * 50 * 7)  # 7 rows per chunk over 50 keys: several chunks, a ragged last one


def scores(n=40, v=50, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    queries = (3 * torch.randn(n, d, generator=g)).requires_grad_()
    keys = torch.randn(v, d, generator=g)
    columns = torch.tensor([0, 3, 4, 17, 49])
    upstream = torch.randn(n, len(columns) + 1, generator=g)  # a gradient arriving from the loss
    return queries, keys, columns, upstream


def whole_rows(log_probs, columns):
    """The plain way: the chosen columns of a full log-softmax, and the log of the rest's mass."""
    rest = torch.ones(log_probs.shape[1], dtype=torch.bool)
    rest[columns] = False
    return torch.cat([log_probs[:, columns], log_probs[:, rest].logsumexp(-1, keepdim=True)], dim=1)


def value_and_grad(fn, queries, upstream):
    queries.grad = None
    out = fn()
    (out * upstream).sum().backward()
    return out.detach(), queries.grad.clone()


def test_log_probs_at_equals_the_plain_log_softmax_in_float32(small_chunks):
    queries, keys, columns, upstream = scores()
    plain = value_and_grad(lambda: whole_rows((queries @ keys.T).log_softmax(-1), columns), queries, upstream)
    chunked = value_and_grad(lambda: log_probs_at(queries, keys, columns), queries, upstream)
    torch.testing.assert_close(chunked[0], plain[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(chunked[1], plain[1], rtol=1e-4, atol=1e-5)


def test_under_bf16_autocast_it_is_no_less_accurate_than_the_plain_version(small_chunks):
    """Against a float32 reference, the chunked bf16 scores err no more than the plain bf16 autocast
    they replace (which rounds the whole (N, V) gradient to bf16 where this rounds one sum per entry)."""
    queries, keys, columns, upstream = scores(n=60, v=50, d=64, seed=1)
    with torch.no_grad():  # cosine scores at the model's scale, as the CTC head makes them
        queries.copy_(30 * nn.functional.normalize(queries, dim=-1))
        keys = nn.functional.normalize(keys, dim=-1)
    reference = value_and_grad(lambda: whole_rows((queries @ keys.T).log_softmax(-1), columns), queries, upstream)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        plain = value_and_grad(lambda: whole_rows((queries @ keys.T).log_softmax(-1), columns), queries, upstream)
        chunked = value_and_grad(lambda: log_probs_at(queries, keys, columns), queries, upstream)
    assert chunked[0].dtype == torch.float32
    value_err, plain_value_err = ((x[0] - reference[0]).abs().max() for x in (chunked, plain))
    grad_err, plain_grad_err = ((x[1] - reference[1]).norm() / reference[1].norm() for x in (chunked, plain))
    assert 0 < plain_value_err and 0 < plain_grad_err  # bf16 did round (else the comparison says nothing)
    assert value_err <= 1.05 * plain_value_err
    assert grad_err <= 1.05 * plain_grad_err


def test_ctc_loss_through_the_chunked_scores_matches_the_plain_ctc(small_chunks):
    """The model's CTC loss (padding frames skipped, columns gathered) against the textbook one."""
    torch.manual_seed(0)
    v, d, blank = 50, 16, 2
    queries, keys = (3 * torch.randn(3, 9, d)).requires_grad_(), torch.randn(v, d)
    lengths, targets = torch.tensor([9, 6, 4]), [torch.tensor([5, 7, 7]), torch.tensor([11, 40]), torch.tensor([30])]

    def plain():
        lp = (queries @ keys.T).log_softmax(-1)
        return nn.functional.ctc_loss(lp.transpose(0, 1), torch.cat(targets), lengths, torch.tensor([3, 2, 1]), blank=blank)

    def chunked():
        columns, positions = torch.unique(torch.cat(targets + [torch.tensor([blank])]), return_inverse=True)
        valid = torch.arange(9) < lengths[:, None]
        lp = queries.new_zeros(3, 9, len(columns) + 1)
        lp[valid] = log_probs_at(queries[valid], keys, columns)
        return nn.functional.ctc_loss(lp.log_softmax(-1).transpose(0, 1), positions[:-1], lengths, torch.tensor([3, 2, 1]), blank=int(positions[-1]))

    one = torch.ones(())
    torch.testing.assert_close(value_and_grad(chunked, queries, one), value_and_grad(plain, queries, one), rtol=1e-4, atol=1e-5)
