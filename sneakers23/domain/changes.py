"""Change events: what happened to one database row, stamped with the row's new version."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Union

from sneakers23.domain.levels import Level, level_for


@dataclass(frozen=True, slots=True)
class ProductReleased:
    """A product's release state changed: released, or its release time set or cleared."""

    product_id: int
    released: bool
    version: int
    release_at: datetime | None = None

    kind = "product_released"


@dataclass(frozen=True, slots=True)
class AvailabilityChanged:
    item_id: int
    product_id: int
    available_count: int
    version: int

    kind = "availability_changed"

    @property
    def level(self) -> Level:
        return level_for(self.available_count)


Change = Union[ProductReleased, AvailabilityChanged]

_KINDS = {cls.kind: cls for cls in (ProductReleased, AvailabilityChanged)}


def change_to_dict(change: Change) -> dict[str, Any]:
    fields = asdict(change)
    if fields.get("release_at") is not None:
        fields["release_at"] = fields["release_at"].isoformat()
    return {"kind": change.kind, **fields}


def change_from_dict(data: dict[str, Any]) -> Change:
    fields = dict(data)
    cls = _KINDS.get(fields.pop("kind", None))
    if cls is None:
        raise ValueError(f"unknown change kind in {data!r}")
    if fields.get("release_at") is not None:
        fields["release_at"] = datetime.fromisoformat(fields["release_at"])
    return cls(**fields)
