"""Item vocabulary: external item ids (strings) to embedding rows.

Row 0 is padding. Every new id gets the next free row, so two ids never share
a row (no hashing). ``capacity`` is the number of rows reserved in the tables
that use the vocabulary; when the vocabulary fills up it doubles, and owners
of tables resize them (see ``capacity`` and ``grow_rows``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

PAD = 0


class ItemVocab:
    """A growing, collision-free map from item id to row (row 0 is padding)."""

    def __init__(self, items: Iterable[str] = (), *, capacity: int = 1024) -> None:
        self._ids: list[str] = ["<pad>"]
        self._rows: dict[str, int] = {}
        self.capacity = max(2, capacity)
        self.add_all(items)

    def __len__(self) -> int:
        """Rows in use, padding included."""
        return len(self._ids)

    def __contains__(self, item: object) -> bool:
        return item in self._rows

    @property
    def n_items(self) -> int:
        """Known items (padding excluded)."""
        return len(self._ids) - 1

    def add(self, item: str) -> int:
        """The row of ``item``, adding it (and doubling capacity when full) if new."""
        row = self._rows.get(item)
        if row is None:
            row = len(self._ids)
            self._ids.append(item)
            self._rows[item] = row
            while len(self._ids) > self.capacity:
                self.capacity *= 2
        return row

    def add_all(self, items: Iterable[str]) -> None:
        for item in items:
            self.add(item)

    def row(self, item: str) -> int:
        """The row of ``item``, or ``PAD`` (0) when unknown."""
        return self._rows.get(item, PAD)

    def rows(self, items: Iterable[str]) -> list[int]:
        return [self._rows.get(i, PAD) for i in items]

    def item(self, row: int) -> str:
        return self._ids[row]

    @property
    def items(self) -> list[str]:
        """Known item ids in row order (padding excluded)."""
        return self._ids[1:]

    def to_json(self) -> dict[str, Any]:
        return {"items": self._ids[1:], "capacity": self.capacity}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ItemVocab:
        return cls(d["items"], capacity=int(d["capacity"]))


def grow_rows(table: torch.Tensor, rows: int, *, std: float = 0.02, seed: int = 0) -> torch.Tensor:
    """``table`` with extra rows (small random values, drawn on the CPU: the same on any device) so that it
    has ``rows`` rows, on ``table``'s device and in its dtype."""
    extra = rows - table.shape[0]
    if extra <= 0:
        return table
    gen = torch.Generator().manual_seed(seed + table.shape[0])
    new = torch.randn((extra, *table.shape[1:]), generator=gen, dtype=torch.float32, device="cpu") * std
    return torch.cat([table, new.to(device=table.device, dtype=table.dtype)], dim=0)
