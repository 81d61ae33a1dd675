"""Change events: what happened to one database row, stamped with the row's new version."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Union

from sneakers23.domain.levels import Level, level_for


@dataclass(frozen=True, slots=True)
class ProductReleased:
    """A product's release state changed: released, or its release time set or cleared."""

    product_id: int
    released: bool
    version: int
    release_at: datetime | None = None

    kind = "product_released"

    def __reduce__(self):  # (a dataclass pickles through fields(): changes cross to every cache)
        return ProductReleased, (self.product_id, self.released, self.version, self.release_at)


@dataclass(frozen=True, slots=True)
class AvailabilityChanged:
    item_id: int
    product_id: int
    available_count: int
    version: int

    kind = "availability_changed"

    def __reduce__(self):
        return AvailabilityChanged, (self.item_id, self.product_id, self.available_count, self.version)

    @property
    def level(self) -> Level:
        return level_for(self.available_count)


Change = Union[ProductReleased, AvailabilityChanged]
