"""First schema: calibrations with their setting, values, provenance and supersede link.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "calibrations",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("setting_key", sa.String, nullable=False, index=True),
        sa.Column("camera_model", sa.String, nullable=False),
        sa.Column("serial", sa.String, nullable=True),
        sa.Column("readout_mode", sa.String, nullable=False),
        sa.Column("is_2cms", sa.Boolean, nullable=False),
        sa.Column("roi_x", sa.Integer, nullable=False),
        sa.Column("roi_y", sa.Integer, nullable=False),
        sa.Column("roi_width", sa.Integer, nullable=False),
        sa.Column("roi_height", sa.Integer, nullable=False),
        sa.Column("binning", sa.Integer, nullable=False),
        sa.Column("bit_depth", sa.Integer, nullable=False),
        sa.Column("usb_traffic", sa.Integer, nullable=False),
        sa.Column("stream_mode", sa.String, nullable=False),
        sa.Column("sdk_version", sa.String, nullable=True),
        sa.Column("firmware_version", sa.String, nullable=True),
        sa.Column("reference", sa.String, nullable=False),
        sa.Column("offset0_us", sa.Float, nullable=False),
        sa.Column("offset0_sigma_us", sa.Float, nullable=False),
        sa.Column("line_period_ns", sa.Float, nullable=False),
        sa.Column("line_period_sigma_ns", sa.Float, nullable=False),
        sa.Column("exposure_scale", sa.Float, nullable=True),
        sa.Column("exposure_scale_sigma", sa.Float, nullable=True),
        sa.Column("method", sa.String, nullable=False),
        sa.Column("measured_at", sa.String, nullable=False),
        sa.Column("notes", sa.Text, nullable=False),
        sa.Column("provenance", sa.Text, nullable=False),
        sa.Column("source", sa.String, nullable=False),
        sa.Column("created_at", sa.String, nullable=False),
        sa.Column("supersedes", sa.Integer, sa.ForeignKey("calibrations.id"), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("calibrations")
