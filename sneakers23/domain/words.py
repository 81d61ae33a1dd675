"""How the shop writes counts in its messages: "1 pair", "2 pairs", never "1 pairs" or "pair(s)"."""

from __future__ import annotations


def counted(count: int, one: str, many: str | None = None) -> str:
    """`count` and its noun, singular for one: counted(1, "pair") is "1 pair", 2 is "2 pairs",
    counted(2, "batch") is "2 batches"."""
    if count == 1:
        return f"1 {one}"
    if many is None:
        many = one + ("es" if one.endswith(("s", "ch", "sh", "x")) else "s")
    return f"{count:,} {many}"
