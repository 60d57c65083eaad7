"""Checks shared by everything that merges passes over parts of a data set."""

from __future__ import annotations

__all__ = ["check_disjoint", "check_same", "union"]


def check_same(mine: dict, theirs: dict, keys, what: str) -> None:
    """Refuse to merge two configs that differ in any of ``keys``."""
    for key in keys:
        if mine[key] != theirs[key]:
            raise ValueError(f"cannot merge {what} with different {key}: "
                             f"{mine[key]} vs {theirs[key]}")


def check_disjoint(mine: list, theirs: list, what: str) -> None:
    """Refuse to merge passes whose [start, stop) image-id ranges overlap."""
    for a, b in mine:
        for c, d in theirs:
            if a < d and c < b:
                raise ValueError(f"cannot merge {what} over overlapping image ids [{a}, {b}) and "
                                 f"[{c}, {d}): give each pass its own index_offset")


def union(ranges: list) -> list:
    """Sorted [start, stop) ranges with touching ones joined."""
    out = []
    for start, stop in sorted(ranges):
        if out and start <= out[-1][1]:
            out[-1][1] = max(out[-1][1], stop)
        else:
            out.append([start, stop])
    return out
