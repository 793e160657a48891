"""Training order: the tensor form of the resumable sampler is `DistributedSampler`'s order, and
its index batches cover every row of the epoch once (plus DistributedSampler's padding)."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DistributedSampler

from flip_core.training.data import (
    IndexBatchSampler,
    ResumableDistributedSampler,
    TensorDictDataset,
)


@pytest.mark.parametrize(
    ("rows", "replicas", "shuffle"), [(103, 1, True), (103, 4, True), (3, 8, True), (10, 3, False)]
)
def test_epoch_indices_follow_distributed_sampler(rows: int, replicas: int, shuffle: bool) -> None:
    data = TensorDictDataset({"x": torch.arange(rows)})
    for rank in range(replicas):
        for epoch in (0, 1):
            stock: DistributedSampler[int] = DistributedSampler(
                data, replicas, rank, shuffle=shuffle, seed=7
            )
            ours = ResumableDistributedSampler(data, replicas, rank, shuffle=shuffle, seed=7)
            stock.set_epoch(epoch)
            ours.set_epoch(epoch)
            expected = list(stock)
            assert ours.epoch_indices().tolist() == expected == list(ours)
            ours.set_skip(2)
            assert list(ours) == expected[2:] and len(ours) == max(0, len(expected) - 2)


def test_index_batches_are_slices_of_the_order() -> None:
    data = TensorDictDataset({"x": torch.arange(50)})
    sampler = ResumableDistributedSampler(data, 1, 0, shuffle=True, seed=1)
    sampler.set_skip(5)
    batches = list(IndexBatchSampler(sampler, 16))
    assert [len(b) for b in batches] == [16, 16, 13]
    assert len(IndexBatchSampler(sampler, 16)) == 3
    assert all(isinstance(b, torch.Tensor) for b in batches)
    assert torch.cat(batches).tolist() == list(sampler)
    rows = [data.__getitems__(b)["x"] for b in batches]  # tensors index the dataset directly
    assert torch.cat(rows).tolist() == list(sampler)


def test_index_batches_are_lists_for_datasets_without_getitems() -> None:
    class RowByRow(torch.utils.data.Dataset[int]):
        def __len__(self) -> int:
            return 7

        def __getitem__(self, index: int) -> int:
            return index

    sampler = ResumableDistributedSampler(RowByRow(), 1, 0, shuffle=False, seed=0)
    assert list(IndexBatchSampler(sampler, 3)) == [[0, 1, 2], [3, 4, 5], [6]]
