"""Per-user item lists (CSR) cut into chunk-sized tensors on the evaluation device.

The item arrays go to the device once (on the CPU, ``torch.as_tensor`` shares numpy's
memory); per chunk, only ``O(users in the chunk)`` numbers cross from the host, and the
expansion to one entry per item runs on the device.
"""

from __future__ import annotations

import numpy as np
import torch

from crossbench.data.protocols import GroundTruth


def row_lookup(gt: GroundTruth, users: np.ndarray) -> np.ndarray:
    """For each of ``users``, its row in ``gt`` or -1."""
    if gt.n_users == 0:
        return np.full(len(users), -1, dtype=np.int64)
    if gt.n_users == len(users) and np.array_equal(gt.users, users):
        return np.arange(len(users), dtype=np.int64)
    order = np.argsort(gt.users, kind="stable")
    sorted_users = gt.users[order]
    pos = np.searchsorted(sorted_users, users).clip(0, len(order) - 1)
    return np.where(sorted_users[pos] == users, order[pos], -1).astype(np.int64)


def csr_take(indptr: np.ndarray, items: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flattened (position in ``rows``, item) pairs of the CSR rows ``rows`` (-1 = none), in numpy."""
    present = rows >= 0
    starts = np.where(present, indptr[np.maximum(rows, 0)], 0)
    lengths = np.where(present, indptr[np.maximum(rows, 0) + 1] - starts, 0)
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    chunk_rows = np.repeat(np.arange(len(rows), dtype=np.int64), lengths)
    offsets = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return chunk_rows, items[np.repeat(starts, lengths) + offsets].astype(np.int64)


def sorted_rows(gt: GroundTruth, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``gt.items`` and ``values`` with every row's items ascending (copies only when a row is not)."""
    items = np.asarray(gt.items, dtype=np.int64)
    if len(items) < 2:
        return items, values
    row = np.repeat(np.arange(gt.n_users), np.diff(gt.indptr))
    same_row = row[1:] == row[:-1]
    if not (same_row & (items[1:] < items[:-1])).any():
        return items, values
    order = np.lexsort((items, row))
    return items[order], values[order]


class DeviceRows:
    """CSR rows (``indptr`` on the host, ``items`` and optional ``values`` on ``device``)."""

    def __init__(
        self, indptr: np.ndarray, items: np.ndarray, device: torch.device, values: np.ndarray | None = None,
        *, on_host: bool | None = None,
    ) -> None:
        self.indptr = np.asarray(indptr, dtype=np.int64)
        self.device = device
        # On the CPU numpy expands rows faster than small torch kernels; elsewhere the device does it.
        self.on_host = device.type == "cpu" if on_host is None else on_host
        self.np_items = np.asarray(items, dtype=np.int64)
        self.np_values = None if values is None else np.asarray(values, dtype=np.float64)
        self.items = torch.as_tensor(np.asarray(items, dtype=np.int64), device=device)
        self.indptr_dev = torch.as_tensor(self.indptr, device=device)
        self.values = None if values is None else torch.as_tensor(np.asarray(values, dtype=np.float64), device=device)

    def _expand(self, starts: torch.Tensor, lengths: torch.Tensor, total: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(row in chunk, offset within row, index into ``items``) of every entry; all on the device.

        ``total`` (the entry count) comes from the host copy of ``indptr``, so nothing waits on the device.
        """
        dev = self.device
        row = torch.repeat_interleave(torch.arange(lengths.shape[0], device=dev), lengths, output_size=total)
        first = torch.cumsum(lengths, 0) - lengths
        offset = torch.arange(total, device=dev) - first[row]
        return row, offset, starts[row] + offset

    def take(self, rows: np.ndarray, rows_on_device: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(row in chunk, item) of every entry of the rows ``rows`` (-1 = none), on the device.

        ``rows_on_device``, the same rows already on the device, spares a host-to-device copy.
        """
        if self.on_host:
            row_np, items_np = csr_take(self.indptr, self.np_items, rows)
            return torch.from_numpy(row_np), torch.from_numpy(items_np)
        present_np = rows >= 0
        safe_np = np.maximum(rows, 0)
        total = int(np.where(present_np, self.indptr[safe_np + 1] - self.indptr[safe_np], 0).sum())
        r = rows_on_device if rows_on_device is not None else torch.as_tensor(rows, device=self.device)
        present = r >= 0
        safe = r.clamp(min=0)
        starts = torch.where(present, self.indptr_dev[safe], 0)
        lengths = torch.where(present, self.indptr_dev[safe + 1] - starts, 0)
        row, _, index = self._expand(starts, lengths, total)
        return row, self.items[index]

    def padded(self, start: int, stop: int, width: int, fill: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Rows ``start:stop`` as ``[B, width]`` items (``fill`` as padding, at the end), valid mask, values."""
        if self.on_host:
            starts_np = self.indptr[start:stop]
            return self._padded_host(start, stop, width, fill, self.indptr[start + 1 : stop + 1] - starts_np)
        starts = self.indptr_dev[start:stop]
        lengths = self.indptr_dev[start + 1 : stop + 1] - starts
        row, offset, index = self._expand(starts, lengths, int(self.indptr[stop] - self.indptr[start]))
        b = stop - start
        items = torch.full((b, width), fill, dtype=torch.int64, device=self.device)
        items[row, offset] = self.items[index]
        values = torch.zeros((b, width), dtype=torch.float64, device=self.device)
        if self.values is not None:
            values[row, offset] = self.values[index]
        valid = torch.arange(width, device=self.device)[None, :] < lengths[:, None]
        return items, valid, values

    def _padded_host(
        self, start: int, stop: int, width: int, fill: int, lengths: np.ndarray
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b = stop - start
        mask = np.arange(width)[None, :] < lengths[:, None]
        lo, hi = self.indptr[start], self.indptr[stop]
        items = np.full((b, width), fill, dtype=np.int64)
        items[mask] = self.np_items[lo:hi]
        values = np.zeros((b, width), dtype=np.float64)
        if self.np_values is not None:
            values[mask] = self.np_values[lo:hi]
        return torch.from_numpy(items), torch.from_numpy(mask), torch.from_numpy(values)
