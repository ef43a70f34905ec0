"""Frame timing index: indexed files, their frames' stamps, alerts and the GPS receiver's log.

- ``index_files``: one row per file (host and absolute path, size, mtime, a fingerprint of
  its first bytes, kind, setting, geometry, the calibration found for it and the exposure),
  unique by (host, path).
- ``index_frames``: one row per complete frame (index in the file, sequence, the three stamps
  in int ns, status, reasons, calibration id, exposure, GNSS cross-check), unique by
  (file, frame); deleted with their file's re-indexing.
- ``index_alerts``: what went wrong and when (raised and cleared in host ns).
- ``gnss_log``: the receiver's state at a bounded rate.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# 64-bit ids on PostgreSQL; SQLite's INTEGER PRIMARY KEY is already 64-bit (and only that
# spelling is its auto-incremented rowid).
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "index_files",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("name", sa.String(255), nullable=False, index=True),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("mtime_ns", sa.BigInteger, nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("fingerprint_bytes", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("message", sa.Text, nullable=False, server_default=""),
        sa.Column("frames", sa.Integer, nullable=False),
        sa.Column("declared_frames", sa.Integer, nullable=False),
        sa.Column("width", sa.Integer, nullable=True),
        sa.Column("height", sa.Integer, nullable=True),
        sa.Column("crop_y", sa.Integer, nullable=True),
        sa.Column("binning", sa.Integer, nullable=True),
        sa.Column("setting_key", sa.String, nullable=True),
        sa.Column("setting", sa.Text, nullable=True),
        sa.Column(
            "calibration_id", sa.Integer, sa.ForeignKey("calibrations.id"), nullable=True
        ),
        sa.Column("calibration_kind", sa.String(16), nullable=True),
        sa.Column("extra_sigma_us", sa.Float, nullable=False, server_default="0"),
        sa.Column("exposure_ns", sa.BigInteger, nullable=True),
        sa.Column("span_lo_ns", sa.BigInteger, nullable=True),
        sa.Column("span_hi_ns", sa.BigInteger, nullable=True),
        sa.Column("indexed_ns", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("host", "path", name="uq_index_files_host_path"),
    )
    op.create_table(
        "index_frames",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column(
            "file_id",
            sa.Integer,
            sa.ForeignKey("index_files.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("frame", sa.Integer, nullable=False),
        sa.Column("sequence", sa.BigInteger, nullable=True, index=True),
        sa.Column("start_ns", sa.BigInteger, nullable=True),
        sa.Column("end_ns", sa.BigInteger, nullable=True, index=True),
        sa.Column("now_ns", sa.BigInteger, nullable=True),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("reasons", sa.Text, nullable=True),
        sa.Column(
            "calibration_id", sa.Integer, sa.ForeignKey("calibrations.id"), nullable=True
        ),
        sa.Column("exposure_ns", sa.BigInteger, nullable=True),
        sa.Column("flipped", sa.Boolean, nullable=False),
        sa.Column("pps_count", sa.Integer, nullable=True),
        sa.Column("latitude_deg", sa.Float, nullable=True),
        sa.Column("longitude_deg", sa.Float, nullable=True),
        sa.Column("host_ns", sa.BigInteger, nullable=True),
        sa.Column("gnss_offset_s", sa.Integer, nullable=True),
        sa.Column("gnss_distance_m", sa.Float, nullable=True),
        sa.UniqueConstraint("file_id", "frame", name="uq_index_frames_file_frame"),
    )
    op.create_table(
        "index_alerts",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(32), nullable=False, index=True),
        sa.Column("severity", sa.String(8), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column(
            "file_id",
            sa.Integer,
            sa.ForeignKey("index_files.id", ondelete="CASCADE"),
            nullable=True,
            index=True,
        ),
        sa.Column(
            "frame_id",
            BigId,
            sa.ForeignKey("index_frames.id", ondelete="CASCADE"),
            nullable=True,
            index=True,
        ),
        sa.Column("frames", sa.Integer, nullable=False, server_default="0"),
        sa.Column("t_ns", sa.BigInteger, nullable=True),
        sa.Column("raised_ns", sa.BigInteger, nullable=False),
        sa.Column("cleared_ns", sa.BigInteger, nullable=True),
    )
    op.create_table(
        "gnss_log",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("host_ns", sa.BigInteger, nullable=False, index=True),
        sa.Column("source", sa.String(255), nullable=False),
        sa.Column("utc_ns", sa.BigInteger, nullable=True),
        sa.Column("fix_quality", sa.Integer, nullable=True),
        sa.Column("fix_type", sa.Integer, nullable=True),
        sa.Column("satellites", sa.Integer, nullable=True),
        sa.Column("satellites_in_view", sa.Integer, nullable=True),
        sa.Column("latitude_deg", sa.Float, nullable=True),
        sa.Column("longitude_deg", sa.Float, nullable=True),
        sa.Column("altitude_m", sa.Float, nullable=True),
        sa.Column("sentences", sa.Integer, nullable=False),
        sa.Column("bad_checksum", sa.Integer, nullable=False),
        sa.Column("partial", sa.Integer, nullable=False),
        sa.Column("garbage", sa.Integer, nullable=False),
        sa.Column("silent", sa.Boolean, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("gnss_log")
    op.drop_table("index_alerts")
    op.drop_table("index_frames")
    op.drop_table("index_files")
