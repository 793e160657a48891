"""Datasets and samplers the trainer needs: in-memory tensor tables and resumable sharding."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset, DistributedSampler


class TensorDictDataset(Dataset[dict[str, Tensor]]):
    """Rows of equally long tensors (e.g. `field_ids [N, F]`, `labels [N]`).

    Implements `__getitems__`, so a `DataLoader` gathers a whole batch with one index operation
    instead of collating row by row; use it with `collate_fn=keep_batch`.
    """

    def __init__(self, tensors: Mapping[str, Tensor]) -> None:
        lengths = {name: len(t) for name, t in tensors.items()}
        if not lengths or len(set(lengths.values())) != 1:
            raise ValueError(f"tensors must be non-empty and equally long, got {lengths}")
        self.tensors = dict(tensors)
        self._length = next(iter(lengths.values()))

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return {name: t[index] for name, t in self.tensors.items()}

    def __getitems__(self, indices: Sequence[int]) -> dict[str, Tensor]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return {name: t[idx] for name, t in self.tensors.items()}


def keep_batch(batch: Any) -> Any:
    """Collate for datasets whose `__getitems__` already returns a batch."""
    return batch


class ResumableDistributedSampler(DistributedSampler[Any]):
    """`DistributedSampler` (also used with one process) that can skip the first samples of an
    epoch, so a resumed run sees exactly the batches the interrupted one had not seen yet.

    The order depends only on (seed, epoch): one process with global batch B and N processes
    with B/N each see the same rows in each step.
    """

    def __init__(
        self,
        dataset: Dataset[Any],
        num_replicas: int,
        rank: int,
        shuffle: bool,
        seed: int,
    ) -> None:
        super().__init__(
            dataset,
            num_replicas=num_replicas,
            rank=rank,
            shuffle=shuffle,
            seed=seed,
            drop_last=False,
        )
        self.skip = 0

    def set_skip(self, samples: int) -> None:
        """Skip this many of this rank's samples at the start of the current epoch."""
        self.skip = samples

    def epoch_indices(self) -> Tensor:
        """This rank's remaining indices for the current epoch, in order (the order of
        `DistributedSampler`: a seeded permutation, padded to a multiple of the ranks by
        repeating its start, rank r taking every N-th index), as one int64 tensor."""
        n = len(self.dataset)  # type: ignore[arg-type]
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(n, generator=gen)
        else:
            order = torch.arange(n)
        if self.total_size > n:
            order = order.repeat(math.ceil(self.total_size / n))
        order = order[: self.total_size][self.rank :: self.num_replicas]
        return order[self.skip :]

    def __iter__(self) -> Iterator[int]:
        return iter(self.epoch_indices().tolist())

    def __len__(self) -> int:
        return max(0, self.num_samples - self.skip)


class IndexBatchSampler(torch.utils.data.Sampler[Any]):
    """Batches of a `ResumableDistributedSampler`'s order, the last one possibly short.

    For datasets with `__getitems__` each batch is an int64 index tensor (a slice of the epoch's
    order: no Python int per row); for the others, a list of ints.
    """

    def __init__(self, sampler: ResumableDistributedSampler, batch_size: int) -> None:
        self.sampler = sampler
        self.batch_size = batch_size
        self.as_tensors = callable(getattr(sampler.dataset, "__getitems__", None))

    def __iter__(self) -> Iterator[Any]:
        for batch in self.sampler.epoch_indices().split(self.batch_size):
            yield batch if self.as_tensors else batch.tolist()

    def __len__(self) -> int:
        return math.ceil(len(self.sampler) / self.batch_size)


class ShardSampler(torch.utils.data.Sampler[int]):
    """Evaluation sampler: rank r takes rows r, r+N, ... in order, no padding, no duplicates."""

    def __init__(self, length: int, num_replicas: int, rank: int) -> None:
        self.indices = range(rank, length, num_replicas)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)
