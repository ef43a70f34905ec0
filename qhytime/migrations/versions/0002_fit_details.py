"""LED-fit details and global reset: frames used, residual RMS, global-reset flag.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("calibrations") as batch:
        batch.add_column(
            sa.Column("global_reset", sa.Boolean, nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("frames", sa.Text, nullable=False, server_default="[]"))
        batch.add_column(sa.Column("residual_rms_us", sa.Float, nullable=True))
    # Setting keys gained the global-reset field; every existing row is a rolling-reset one.
    op.execute("UPDATE calibrations SET setting_key = setting_key || '|gr=0'")


def downgrade() -> None:
    op.execute(
        "UPDATE calibrations SET setting_key = substr(setting_key, 1, length(setting_key) - 5)"
    )
    with op.batch_alter_table("calibrations") as batch:
        batch.drop_column("residual_rms_us")
        batch.drop_column("frames")
        batch.drop_column("global_reset")
