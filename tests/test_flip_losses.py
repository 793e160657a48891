"""Sampled MTM losses against the full softmax, and InfoNCE with cross-rank negatives."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from flip_core.models.heads import (
    full_softmax_loss,
    gather_with_grad,
    info_nce_loss,
    log_noise_from_counts,
    nce_loss,
    sampled_softmax_loss,
)

torch.set_num_threads(1)

V, D = 12, 12


def _true_distribution() -> torch.Tensor:
    """A skewed target distribution over the real ids 2..V-1 (PAD/MASK impossible)."""
    p = torch.zeros(V)
    p[2:] = torch.linspace(1.0, 6.0, V - 2) ** 2
    return p / p.sum()


def _fit(loss_fn: Callable[..., torch.Tensor], seed: int, **kwargs: object) -> torch.Tensor:
    """Fit free per-id scores to samples of the target distribution by SGD; return the
    average of the second half of the iterates (the sampled losses are noisy per step)."""
    g = torch.Generator().manual_seed(seed)
    p = _true_distribution()
    hidden = torch.ones(512, 1)  # one context: the score of id i is weight[i, 0]
    weight = torch.zeros(V, 1, requires_grad=True)
    bias = torch.zeros(V)
    opt = torch.optim.SGD([weight], lr=2.0)
    steps, total = 200, torch.zeros(V)
    for step in range(steps):
        targets = torch.multinomial(p, 512, replacement=True, generator=g)
        loss = loss_fn(hidden, targets, weight, bias, **kwargs).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step >= steps // 2:
            total += weight.detach()[:, 0]
    return total / (steps - steps // 2)


def _tv(scores: torch.Tensor) -> float:
    q = torch.softmax(scores[2:], 0)
    return 0.5 * float((q - _true_distribution()[2:]).abs().sum())


@pytest.mark.parametrize("noise", ["unigram", "uniform"])
def test_sampled_softmax_and_nce_fit_the_distribution_full_softmax_fits(noise: str) -> None:
    """Over 3 seeds, scores fitted with each sampled loss (20 negatives over 10 real ids) give a
    distribution within total variation 0.07 of the truth (full softmax: within 0.02), and NCE's
    scores are self-normalised (sum of exp(score) within 0.25 of 1)."""
    p = _true_distribution()
    counts = (p * 10_000).round() if noise == "unigram" else torch.ones(V)
    log_q = log_noise_from_counts(counts)
    full = [_tv(_fit(full_softmax_loss, seed)) for seed in range(3)]
    kw = {"log_noise": log_q, "num_negatives": 20}
    sampled = [_tv(_fit(sampled_softmax_loss, s, **kw)) for s in range(3)]
    nce_scores = [_fit(nce_loss, s, **kw) for s in range(3)]
    assert max(full) < 0.02, full
    assert sum(sampled) / 3 < 0.07, sampled
    assert sum(_tv(sc) for sc in nce_scores) / 3 < 0.07, [_tv(sc) for sc in nce_scores]
    for sc in nce_scores:
        assert abs(float(sc[2:].exp().sum()) - 1.0) < 0.25


def test_nce_gradient_vanishes_in_expectation_at_the_true_scores() -> None:
    """NCE is consistent: at scores = log p its Monte-Carlo mean gradient is zero within
    4 standard errors for every id."""
    p = _true_distribution()
    log_q = log_noise_from_counts((p * 10_000).round())
    weight = torch.zeros(V, 1)
    weight[2:, 0] = p[2:].log()
    weight.requires_grad_()
    g = torch.Generator().manual_seed(0)
    grads = []
    for _ in range(300):
        targets = torch.multinomial(p, 64, replacement=True, generator=g)
        nce_loss(torch.ones(64, 1), targets, weight, torch.zeros(V), log_q, 5, g).mean().backward()
        assert weight.grad is not None
        grads.append(weight.grad[2:, 0].clone())
        weight.grad = None
    stack = torch.stack(grads)
    se = stack.std(0) / len(grads) ** 0.5
    assert (stack.mean(0).abs() < 4 * se + 1e-4).all(), (stack.mean(0), se)


def test_sampled_softmax_gradient_matches_full_softmax_in_expectation() -> None:
    """Mean gradient of the log-Q-corrected sampled loss over many noise draws points the
    same way as the full-softmax gradient; without the correction it would not."""
    torch.manual_seed(0)
    hidden = torch.randn(4, D)
    targets = torch.tensor([2, 5, 7, 11])
    weight = (torch.randn(V, D) * 0.3).requires_grad_()
    bias = torch.zeros(V, requires_grad=True)
    full_softmax_loss(hidden, targets, weight, bias).sum().backward()
    assert weight.grad is not None
    g_full = weight.grad.clone()
    weight.grad = None
    counts = torch.arange(V, dtype=torch.float) ** 2
    log_q = log_noise_from_counts(counts)
    total = torch.zeros_like(g_full)
    draws = 400
    gen = torch.Generator().manual_seed(1)
    for _ in range(draws):
        sampled_softmax_loss(
            hidden, targets, weight, bias, log_q, 20, generator=gen
        ).sum().backward()
        assert weight.grad is not None
        total += weight.grad
        weight.grad = None
    cos = torch.nn.functional.cosine_similarity(total.flatten() / draws, g_full.flatten(), dim=0)
    assert cos > 0.95, float(cos)


def test_reserved_ids_are_never_predicted_or_sampled() -> None:
    log_q = log_noise_from_counts([100, 100, 1, 1])
    assert torch.isinf(log_q[:2]).all() and torch.isfinite(log_q[2:]).all()
    hidden, weight = torch.randn(3, 4), torch.randn(4, 4)
    bias = torch.tensor([50.0, 50.0, 0.0, 0.0])  # PAD/MASK would win if allowed
    loss = full_softmax_loss(hidden, torch.tensor([2, 3, 2]), weight, bias)
    assert torch.isfinite(loss).all() and float(loss.max()) < 40


def test_info_nce_single_process() -> None:
    a = torch.randn(8, 16)
    loss_same, acc_same = info_nce_loss(a, a.clone(), 0.05)
    loss_rand, _ = info_nce_loss(a, torch.randn(8, 16), 0.05)
    assert float(acc_same) == 1.0 and float(loss_same) < float(loss_rand)
    x, offset = gather_with_grad(a)
    assert x is a and offset == 0


def _ddp_worker(rank: int, world: int, port: int, queue: mp.Queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    a_all = torch.randn(5, 6, requires_grad=True)
    b_all = torch.randn(5, 6, requires_grad=True)
    rows = [slice(0, 3), slice(3, 5)][rank]  # unequal shards: 3 rows and 2 rows
    a, b = a_all[rows], b_all[rows]
    gathered, offset = gather_with_grad(a)
    loss, _ = info_nce_loss(a, b, 0.1)
    (loss * a.shape[0] / 5).backward()  # so the ranks' losses sum to the global mean
    grads = (a_all.grad.tolist(), b_all.grad.tolist())  # type: ignore[union-attr]
    queue.put((rank, offset, gathered.shape[0], float(loss.detach()), *grads))  # lists: no fds
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_info_nce_gathers_negatives_across_ranks_with_gradients() -> None:
    """Two gloo ranks with unequal shards reproduce the single-process loss and gradients."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_ddp_worker, args=(r, 2, port, queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = sorted(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    torch.manual_seed(0)
    a_all = torch.randn(5, 6, requires_grad=True)
    b_all = torch.randn(5, 6, requires_grad=True)
    ref, _ = info_nce_loss(a_all, b_all, 0.1)
    ref.backward()
    assert [(r[1], r[2]) for r in results] == [(0, 5), (3, 5)]
    weighted = (results[0][3] * 3 + results[1][3] * 2) / 5
    assert abs(weighted - float(ref.detach())) < 1e-5
    # autograd through all_gather sums every rank's gradient onto the rank that owns the rows
    ga0, ga1 = torch.tensor(results[0][4]), torch.tensor(results[1][4])
    gb0, gb1 = torch.tensor(results[0][5]), torch.tensor(results[1][5])
    assert float(ga0[3:].abs().sum()) == 0.0  # rank 0 holds no gradient for rank 1's rows
    torch.testing.assert_close(ga0 + ga1, a_all.grad)
    torch.testing.assert_close(gb0 + gb1, b_all.grad)
