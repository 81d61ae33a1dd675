"""waiting_rooms and waiting_places: a queued drop's commitment and record, and one place in line
per account

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 04:00:00
"""
import hashlib
import secrets
from datetime import datetime, timezone
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: Union[str, None] = "0011"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "waiting_rooms",
        sa.Column("product_id", sa.Integer(), sa.ForeignKey("products.id"), primary_key=True),
        sa.Column("seed", sa.String(length=128), nullable=False),
        sa.Column("commitment", sa.String(length=64), nullable=False),
        sa.Column("record", sa.Text(), nullable=True),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("pace_per_minute", sa.Float(), nullable=True),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("inserted_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "waiting_places",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("product_id", sa.Integer(), sa.ForeignKey("waiting_rooms.product_id"), nullable=False),
        sa.Column("shopper_id", sa.String(length=64), nullable=False),
        sa.Column("entry_id", sa.String(length=32), nullable=False),
        sa.Column("stage", sa.String(length=16), nullable=False),
        sa.Column("number", sa.Integer(), nullable=True),
        sa.Column("until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("proof", sa.String(length=64), nullable=True),
        sa.Column("joined_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("product_id", "shopper_id", name="waiting_places_one_per_account"),
        sa.UniqueConstraint("product_id", "entry_id", name="waiting_places_entry_id_unique"),
        sa.UniqueConstraint("product_id", "number", name="waiting_places_number_unique"),
        sa.UniqueConstraint("proof", name="waiting_places_proof_once"),
        sa.CheckConstraint("stage IN ('pre_queue', 'queue', 'admitted', 'bought', 'expired', 'removed')",
                           name="waiting_stage_known"),
    )
    op.create_index("ix_waiting_places_product_id", "waiting_places", ["product_id"])
    op.create_index("ix_waiting_places_joined", "waiting_places", ["product_id", "joined_at"])  # (the keeper's window)
    # A product made a queue before this revision gets its waiting room now: its seed, and the
    # commitment its page shows from here on (nobody could join before).
    connection = op.get_bind()
    now = datetime.now(timezone.utc)
    for (product_id,) in connection.execute(sa.text("SELECT id FROM products WHERE drop_mode = 'queue'")).all():
        seed = secrets.token_bytes(32)
        connection.execute(sa.text("INSERT INTO waiting_rooms (product_id, seed, commitment, version, inserted_at) "
                                   "VALUES (:product_id, :seed, :commitment, 1, :now)"),
                           {"product_id": product_id, "seed": seed.hex(), "commitment": hashlib.sha256(seed).hexdigest(),
                            "now": now})


def downgrade() -> None:
    op.drop_index("ix_waiting_places_joined", table_name="waiting_places")
    op.drop_index("ix_waiting_places_product_id", table_name="waiting_places")
    op.drop_table("waiting_places")
    op.drop_table("waiting_rooms")
