"""Retractions (a withdrawn calibration stays in the history, marked) and store metadata.

``retractions`` holds one row per withdrawn calibration, never updated or deleted;
``qhytime_meta`` holds key/value facts about the database, such as the qhytime version
that last upgraded it, so an older qhytime can say which version to upgrade to.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "retractions",
        sa.Column(
            "calibration_id", sa.Integer, sa.ForeignKey("calibrations.id"), primary_key=True
        ),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("retracted_at", sa.String, nullable=False),
    )
    op.create_table(
        "qhytime_meta",
        sa.Column("key", sa.String, primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("qhytime_meta")
    op.drop_table("retractions")
