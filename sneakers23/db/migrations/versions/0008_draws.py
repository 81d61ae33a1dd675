"""draws and draw_entries: a draw's commitment and record, and one entry per account with its size

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 18:30:00
"""
import hashlib
import secrets
from datetime import datetime, timezone
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: Union[str, None] = "0007"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "draws",
        sa.Column("product_id", sa.Integer(), sa.ForeignKey("products.id"), primary_key=True),
        sa.Column("seed", sa.String(length=128), nullable=False),
        sa.Column("commitment", sa.String(length=64), nullable=False),
        sa.Column("record", sa.Text(), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("inserted_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "draw_entries",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("product_id", sa.Integer(), sa.ForeignKey("draws.product_id"), nullable=False),
        sa.Column("shopper_id", sa.String(length=64), nullable=False),
        sa.Column("entry_id", sa.String(length=32), nullable=False),
        sa.Column("item_id", sa.Integer(), sa.ForeignKey("items.id"), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("note", sa.String(length=255), nullable=False),
        sa.Column("entered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("product_id", "shopper_id", name="draw_entries_one_per_account"),
        sa.UniqueConstraint("product_id", "entry_id", name="draw_entries_entry_id_unique"),
        sa.CheckConstraint("outcome IN ('entered', 'won', 'bought', 'failed', 'lost', 'removed')",
                           name="draw_outcome_known"),
    )
    op.create_index("ix_draw_entries_product_id", "draw_entries", ["product_id"])
    # A product made a draw before this revision gets its draw now: its seed, and the commitment its
    # page shows from here on (no entry could be made before).
    connection = op.get_bind()
    now = datetime.now(timezone.utc)
    for (product_id,) in connection.execute(sa.text("SELECT id FROM products WHERE drop_mode = 'draw'")).all():
        seed = secrets.token_bytes(32)
        connection.execute(sa.text("INSERT INTO draws (product_id, seed, commitment, inserted_at) "
                                   "VALUES (:product_id, :seed, :commitment, :now)"),
                           {"product_id": product_id, "seed": seed.hex(), "commitment": hashlib.sha256(seed).hexdigest(),
                            "now": now})


def downgrade() -> None:
    op.drop_index("ix_draw_entries_product_id", table_name="draw_entries")
    op.drop_table("draw_entries")
    op.drop_table("draws")
