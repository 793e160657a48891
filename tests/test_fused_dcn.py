"""The fused parallel DCN-v2 path equals the stock modules: outputs, every gradient (through the
logits and through row_repr), dropout draws, and workspace reuse across steps."""

from __future__ import annotations

import gc

import pytest
import torch

from flip_core.config import IDModelConfig
from flip_core.models import build_id_model
from flip_core.models.fused import WorkspacePool, can_fuse_parallel_dcn, parallel_dcn
from flip_core.models.id.dcnv2 import DCNv2

torch.set_num_threads(1)

VOCAB = [12, 5, 9, 30, 7, 25]


def _model(dropout: float, cross_layers: int = 3, hidden: list[int] | None = None) -> DCNv2:
    torch.manual_seed(0)
    config = IDModelConfig(
        embedding_dim=8,
        hidden_units=hidden or [32, 16],
        dropout=dropout,
        options={"structure": "parallel", "cross_layers": cross_layers},
    )
    model = build_id_model("dcnv2", VOCAB, config)
    assert isinstance(model, DCNv2)
    for prm in model.parameters():  # non-zero biases, so every term of the backward counts
        torch.nn.init.normal_(prm, std=0.3)
    return model


def _ids(rows: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randint(0, v, (rows,), generator=gen) for v in VOCAB], dim=1)


def _stock(model: DCNv2, x0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    row = torch.cat([model.cross(x0), model.mlp(x0)], dim=1)
    return model.head(row).squeeze(-1), row


def _grads(model: DCNv2, x0: torch.Tensor, fused: bool, seed: int) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    x = x0.detach().clone().requires_grad_(True)
    torch.manual_seed(seed)
    if fused:
        logits, row = parallel_dcn(x, model.cross, model.mlp, model.head, model.workspaces)
    else:
        logits, row = _stock(model, x)
    weights = torch.linspace(-1, 1, row.shape[1])
    loss = (logits.sigmoid() - 0.3).pow(2).sum() + (row * weights).tanh().sum()
    loss.backward()
    out = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    assert x.grad is not None
    out.update(x0=x.grad.clone(), logits=logits.detach(), row=row.detach())
    return out


@pytest.mark.parametrize(
    ("dropout", "cross_layers", "hidden"),
    [(0.0, 3, [32, 16]), (0.3, 3, [32, 16]), (0.2, 1, [24]), (0.2, 0, [16, 16, 8])],
)
def test_fused_matches_stock_modules(dropout: float, cross_layers: int, hidden: list[int]) -> None:
    model = _model(dropout, cross_layers, hidden).train()
    x0 = model.embedding(_ids(64, 1)).flatten(1).detach()
    assert can_fuse_parallel_dcn(model.cross, model.mlp, x0)
    for seed in (3, 4):  # the second step reuses the first step's workspace
        stock, fused = _grads(model, x0, False, seed), _grads(model, x0, True, seed)
        assert stock.keys() == fused.keys()
        assert len(stock) == 2 * (cross_layers + len(hidden) + 1) + 3
        for name, value in stock.items():
            torch.testing.assert_close(fused[name], value, rtol=1e-5, atol=1e-6, msg=name)


def test_model_forward_takes_the_fused_path_only_when_it_applies() -> None:
    model = _model(0.1).train()
    ids, labels = _ids(32, 2), torch.ones(32)
    out = model(ids, labels)
    assert out.loss is not None and type(out.logits.grad_fn).__name__ == "_ParallelDCNBackward"
    with torch.no_grad():
        assert model(ids).logits.grad_fn is None
    model.eval()
    fused_eval = model(ids).logits
    with torch.no_grad():
        torch.testing.assert_close(fused_eval.detach(), model(ids).logits)
    stacked = build_id_model(
        "dcnv2", VOCAB, IDModelConfig(embedding_dim=8, options={"structure": "stacked"})
    )
    assert type(stacked(ids).logits.grad_fn).__name__ != "_ParallelDCNBackward"
    low_rank = build_id_model(
        "dcnv2", VOCAB, IDModelConfig(embedding_dim=8, options={"low_rank": 4})
    )
    assert type(low_rank(ids).logits.grad_fn).__name__ != "_ParallelDCNBackward"


def test_outputs_are_not_overwritten_by_later_steps() -> None:
    model = _model(0.2).train()
    first = model(_ids(16, 5))
    kept_logits, kept_row = first.logits.detach().clone(), first.row_repr.detach().clone()
    first.logits.sum().backward()
    for seed in (6, 7):
        model(_ids(16, seed)).logits.sum().backward()
    torch.testing.assert_close(first.logits.detach(), kept_logits, rtol=0, atol=0)
    torch.testing.assert_close(first.row_repr.detach(), kept_row, rtol=0, atol=0)


def test_two_forwards_before_backward_use_separate_workspaces() -> None:
    model = _model(0.0).train()
    a_ids, b_ids = _ids(16, 8), _ids(16, 9)
    weight = model.cross.layers[0].weight
    assert isinstance(weight, torch.Tensor)

    def grad() -> torch.Tensor:
        assert weight.grad is not None
        return weight.grad.clone()

    ref = {}
    for name, ids in (("a", a_ids), ("b", b_ids)):
        model.zero_grad(set_to_none=True)
        model(ids).logits.sum().backward()
        ref[name] = grad()
    model.zero_grad(set_to_none=True)
    out_a, out_b = model(a_ids), model(b_ids)  # both graphs alive at once
    out_b.logits.sum().backward()
    grad_b = grad()
    model.zero_grad(set_to_none=True)
    out_a.logits.sum().backward()
    torch.testing.assert_close(grad_b, ref["b"])
    torch.testing.assert_close(grad(), ref["a"])


def test_workspaces_come_back_to_the_pool() -> None:
    model = _model(0.0).train()
    pool: WorkspacePool = model.workspaces
    for _ in range(3):
        model(_ids(8, 1)).logits.sum().backward()
    assert len(pool.free) == 1
    unused = [model(_ids(8, s)) for s in range(4)]  # four graphs alive: four workspaces
    assert not pool.free
    del unused
    gc.collect()
    assert len(pool.free) == pool.keep


def test_under_torch_compile_the_stock_modules_are_traced(monkeypatch: pytest.MonkeyPatch) -> None:
    # the fused node keeps Python state (workspace leases) that dynamo cannot trace; compiled
    # models must run the stock modules and still give the eager results
    unraisable: list[object] = []
    monkeypatch.setattr("sys.unraisablehook", unraisable.append)
    ids = _ids(32, 7)
    labels = (ids[:, 0] % 2).float()
    results = []
    for compile_it in (False, True):
        model = _model(0.2).train()
        runner = torch.compile(model, backend="eager") if compile_it else model
        torch.manual_seed(11)
        out = runner(field_ids=ids, labels=labels)
        assert out.loss is not None
        out.loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        loss = out.loss.detach()
        del out  # frees the autograd graph, and with it any workspace lease
        gc.collect()
        results.append((loss, grads, len(model.workspaces.free)))
    (eager_loss, eager_grads, eager_free), (loss, grads, free) = results
    assert eager_free == 1 and free == 0  # eager leased a workspace, the compiled model did not
    torch.testing.assert_close(loss, eager_loss)
    assert grads.keys() == eager_grads.keys()
    for name, value in eager_grads.items():
        torch.testing.assert_close(grads[name], value, rtol=1e-5, atol=1e-6, msg=name)
    assert unraisable == []
