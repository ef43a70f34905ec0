"""Alembic migrations of the calibration store (run automatically when a store opens)."""
