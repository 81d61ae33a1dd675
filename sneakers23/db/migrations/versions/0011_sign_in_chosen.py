"""products.sign_in_chosen: whether the staff chose who may buy a product (sign-in required, or
guests too); a drop scheduled without that choice sells to signed-in shoppers (domain/drops.py)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 03:30:00
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: Union[str, None] = "0010"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table("products", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sign_in_chosen", sa.Boolean(), nullable=False, server_default=sa.false()))
    # A product whose sign-in someone already turned on was chosen so; one still open to guests
    # was not (it is the default): its next scheduled drop asks for sign-in.
    op.execute("UPDATE products SET sign_in_chosen = sign_in_required")


def downgrade() -> None:
    with op.batch_alter_table("products", schema=None) as batch_op:
        batch_op.drop_column("sign_in_chosen")
