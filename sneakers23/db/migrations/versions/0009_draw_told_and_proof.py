"""draws.told_at: when every entrant of a finished draw was written to, so that a draw whose letters
a crash or an outage stopped is told by the next run; draw_entries.proof: the challenge of the proof
of work an entry was made with, once (a solution reused on another account, or on another replica,
is refused by its unique index)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 22:30:00
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: Union[str, None] = "0008"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table("draws") as table:
        table.add_column(sa.Column("told_at", sa.DateTime(timezone=True), nullable=True))
    # A draw finished before this revision told its entrants as it finished: not again.
    op.execute("UPDATE draws SET told_at = finished_at WHERE finished_at IS NOT NULL")
    with op.batch_alter_table("draw_entries") as table:
        table.add_column(sa.Column("proof", sa.String(length=64), nullable=True))
        table.create_unique_constraint("draw_entries_proof_once", ["proof"])


def downgrade() -> None:
    with op.batch_alter_table("draw_entries") as table:
        table.drop_constraint("draw_entries_proof_once", type_="unique")
        table.drop_column("proof")
    with op.batch_alter_table("draws") as table:
        table.drop_column("told_at")
