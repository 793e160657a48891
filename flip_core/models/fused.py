"""A fused CPU training path for the parallel DCN-v2 body (cross network beside an MLP, then a
linear head): one autograd node with a hand-written backward instead of ~20 small ones.

What it saves on CPU, measured against the stock modules (same batches, interleaved; see
`benchmarks/peers.py` for the end-to-end figure): no `torch.cat` of the two towers (both write
into one row buffer), no gradient accumulation between the two consumers of `x0`, and no fresh
allocation of the intermediate activations and their gradients each step: they live in
workspaces reused from step to step (on this kind of machine first-touching a fresh megabyte
costs several times the arithmetic done on it). Only the outputs (`logits`, `row_repr`) and the
returned gradients are new tensors, so nothing a caller holds is ever overwritten.

The arithmetic is the stock one, op for op (the same dropout masks, drawn in the same order),
so results match the unfused modules to float rounding.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from flip_core.models.layers import MLP, CrossNetV2, relu_dropout_into


class _Workspace:
    """Named scratch tensors for one (forward, backward) pair, created on first use."""

    def __init__(self) -> None:
        self.tensors: dict[str, Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...], like: Tensor) -> Tensor:
        """The scratch tensor `name`, (re)made when its shape, dtype or device changes."""
        t = self.tensors.get(name)
        if t is None or t.shape != shape or t.dtype != like.dtype or t.device != like.device:
            t = self.tensors[name] = torch.empty(shape, dtype=like.dtype, device=like.device)
        return t


class WorkspacePool:
    """Workspaces of a module. A forward leases one and keeps the lease on its autograd node;
    the workspace comes back when that node is freed (after backward, or when its outputs are
    dropped unused), so two forwards before one backward each get their own."""

    def __init__(self, keep: int = 2) -> None:
        self.free: list[_Workspace] = []
        self.keep = keep

    def lease(self) -> _Lease:
        """A workspace, handed back when the returned lease is garbage."""
        return _Lease(self, self.free.pop() if self.free else _Workspace())

    def give_back(self, space: _Workspace) -> None:
        """Keep `space` for a later forward (at most `keep` are kept)."""
        if len(self.free) < self.keep:
            self.free.append(space)


class _Lease:
    def __init__(self, pool: WorkspacePool, space: _Workspace) -> None:
        self.pool, self.space = pool, space

    def __del__(self) -> None:
        self.pool.give_back(self.space)


def can_fuse_parallel_dcn(cross: CrossNetV2, mlp: MLP, x0: Tensor) -> bool:
    """Whether `parallel_dcn` applies: eager mode (under `torch.compile` the stock modules are
    traced instead), CPU, float32, grad enabled, no autocast, full-rank cross layers, an MLP of
    Linear/ReLU(/Dropout) blocks."""
    return (
        not torch.compiler.is_compiling()
        and x0.device.type == "cpu"
        and x0.dtype == torch.float32
        and torch.is_grad_enabled()
        and not torch.is_autocast_enabled("cpu")
        and all(isinstance(layer, nn.Linear) for layer in cross.layers)
        and all(isinstance(m, nn.Linear | nn.ReLU | nn.Dropout) for m in mlp.net)
        and any(isinstance(m, nn.Linear) for m in mlp.net)
    )


def parallel_dcn(
    x0: Tensor,
    cross: CrossNetV2,
    mlp: MLP,
    head: nn.Linear,
    pool: WorkspacePool,
) -> tuple[Tensor, Tensor]:
    """`(logits [B], row_repr [B, D + H])` of `head(cat([cross(x0), mlp(x0)]))`, in training
    mode (dropout on when `mlp.training`), through one fused autograd node."""
    cross_layers = [layer for layer in cross.layers if isinstance(layer, nn.Linear)]
    mlp_layers = [m for m in mlp.net if isinstance(m, nn.Linear)]
    p = mlp.dropout if mlp.training else 0.0
    params: list[Tensor] = []
    for layer in [*cross_layers, *mlp_layers, head]:
        params += [layer.weight, layer.bias]
    logits, row = _ParallelDCN.apply(x0, len(cross_layers), p, pool, *params)
    return logits, row


class _ParallelDCN(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, x0: Tensor, num_cross: int, p: float, pool: WorkspacePool, *params: Tensor
    ) -> tuple[Tensor, Tensor]:
        ctx.set_materialize_grads(False)
        ctx.lease = pool.lease()
        space = ctx.lease.space
        buf: Callable[[str, tuple[int, ...]], Tensor] = lambda n, s: space.get(n, s, x0)  # noqa: E731
        weights, biases = params[0::2], params[1::2]
        rows, dim = x0.shape
        mlp_out = weights[-2].shape[0]
        row = x0.new_empty((rows, dim + mlp_out))
        # cross tower: x_{l+1} = x0 * (W_l x_l + b_l) + x_l; the last one lands in row[:, :D]
        xs, hs = [x0], []
        for i in range(num_cross):
            h = torch.addmm(biases[i], xs[-1], weights[i].t(), out=buf(f"h{i}", (rows, dim)))
            out = row[:, :dim] if i == num_cross - 1 else buf(f"x{i + 1}", (rows, dim))
            xs.append(torch.addcmul(xs[-1], x0, h, out=out))
            hs.append(h)
        if num_cross == 0:
            row[:, :dim].copy_(x0)
        # deep tower: z_{k+1} = relu_dropout(W_k z_k + b_k); the last one lands in row[:, D:]
        zs, masks = [x0], []
        num_mlp = len(weights) - num_cross - 1
        for k in range(num_mlp):
            w, b = weights[num_cross + k], biases[num_cross + k]
            a = torch.addmm(b, zs[-1], w.t(), out=buf(f"a{k}", (rows, w.shape[0])))
            out = row[:, dim:] if k == num_mlp - 1 else buf(f"z{k + 1}", tuple(a.shape))
            mask = buf(f"m{k}", tuple(a.shape))
            # the stock relu_dropout: the same draws, in the same order
            relu_dropout_into(a, p, out, mask)
            zs.append(out)
            masks.append(mask)
        logits = torch.addmv(biases[-1], row, weights[-1][0])
        # Workspace tensors are kept on ctx. The backward needs neither the first (x0, in
        # saved_tensors) nor the last (a view of the output `row`: keeping it on ctx would make
        # an uncollectable cycle, node -> view -> row -> node) of each tower's inputs.
        ctx.num_cross, ctx.xs, ctx.hs, ctx.zs, ctx.masks = num_cross, xs[1:-1], hs, zs[1:-1], masks
        ctx.save_for_backward(x0, row, *params)
        return logits, row

    @staticmethod
    def backward(ctx: Any, grad_logits: Tensor | None, grad_row: Tensor | None) -> tuple[Any, ...]:
        x0, row, *params = ctx.saved_tensors
        weights = params[0::2]
        space: _Workspace = ctx.lease.space
        buf: Callable[[str, tuple[int, ...]], Tensor] = lambda n, s: space.get(n, s, x0)  # noqa: E731
        num_cross, hs, masks = ctx.num_cross, ctx.hs, ctx.masks
        xs, zs = [x0, *ctx.xs], [x0, *ctx.zs]
        rows, dim = x0.shape
        grads: list[Tensor] = []  # filled from the head back, reversed at the end
        # head: logits = row @ w + b
        g_row = buf("g_row", tuple(row.shape))
        if grad_logits is not None:
            torch.mul(grad_logits[:, None], weights[-1], out=g_row)
            if grad_row is not None:
                g_row.add_(grad_row)
            grads += [grad_logits.sum().reshape(1), (grad_logits @ row)[None, :]]
        else:
            assert grad_row is not None
            g_row.copy_(grad_row)
            grads += [torch.zeros_like(params[-1]), torch.zeros_like(weights[-1])]
        # deep tower, last layer first
        g_z = g_row[:, dim:]
        g_x0 = x0.new_empty(x0.shape)
        num_mlp = len(masks)
        for k in reversed(range(num_mlp)):
            w = weights[num_cross + k]
            g_a = torch.mul(g_z, masks[k], out=buf(f"g_a{k}", tuple(masks[k].shape)))
            grads += [g_a.sum(0), g_a.t() @ zs[k]]
            if k > 0:
                g_z = torch.mm(g_a, w, out=buf(f"g_z{k}", (rows, w.shape[1])))
            else:
                torch.mm(g_a, w, out=g_x0)
        # cross tower, last layer first; g_x accumulates in place in g_row[:, :D]
        g_x = g_row[:, :dim]
        for i in reversed(range(num_cross)):
            g_h = torch.mul(g_x, x0, out=buf(f"g_h{i}", (rows, dim)))
            g_x0.addcmul_(g_x, hs[i])
            grads += [g_h.sum(0), g_h.t() @ xs[i]]
            g_x.addmm_(g_h, weights[i])
        g_x0.add_(g_x)
        grads.reverse()  # now weight, bias pairs in parameter order
        return (g_x0, None, None, None, *grads)
