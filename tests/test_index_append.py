"""A SER indexed while it grows (its new frames appended) holds what one indexing of the
finished file holds: every frame's times and verdicts (reason codes).

The independent truth is a fresh index of the final file in one pass. The reasons' figures
(how far off the cadence a damaged frame is) may differ a little: the run's cadence, which
they are measured against, moves as the run grows; the verdicts may not.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from damaged import PPS, H, W, _stamp, damaged_frames
from hypothesis import given, settings
from hypothesis import strategies as st
from test_index_stream import _dump
from test_service_index import ser_bytes, ser_header

import qhytime.decode
from qhytime.gpsblock import GpsBlock, embed_block
from qhytime.readers.serfile import write_ser
from qhytime.service.alerts import list_alerts
from qhytime.service.index import FrameIndex
from qhytime.simulate import CameraSim
from qhytime.validity import reason_code


def _recording(path: Path) -> None:
    """A SER as a capture program starts it: the header, frame count 0, no frame yet."""
    write_ser(path, np.zeros((0, H, W), dtype=np.uint16))


def _verdicts(dump: dict[str, Any]) -> list[dict[str, Any]]:
    """Every frame row, its reasons replaced by their codes."""
    out = []
    for _, row in dump["frames"]:
        row = dict(row)
        texts = row.pop("reasons")
        row["codes"] = [reason_code(t) for t in json.loads(texts)] if texts else []
        out.append(row)
    return out


def _grow_and_compare(tmp: Path, seed: int, streamed: bool) -> list[str]:
    """A damaged recording (frame count 0) written in random pieces, indexed after each; the
    actions taken. Asserts the grown index equals one indexing of the final file."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 100))
    raw = damaged_frames(n, rng, float(rng.uniform(0.0, 0.2))).astype("<u2").reshape(n, -1)
    cuts = [*sorted(set(rng.integers(1, n, size=int(rng.integers(1, 8))).tolist())), n]
    path = tmp / f"rec{seed}.ser"
    _recording(path)
    actions = []
    with pytest.MonkeyPatch.context() as m:
        if streamed:  # every file decoded in chunks of a few frames
            m.setattr(qhytime.decode, "DECODE_CHUNK_FRAMES", int(rng.integers(3, 12)))
            m.setattr(qhytime.decode, "WHOLE_FILE_FRAMES", 0)
        with FrameIndex(f"sqlite:///{tmp / f'grown{seed}.sqlite'}") as index:
            done = 0
            for c in cuts:
                with open(path, "ab") as fh:
                    fh.write(raw[done:c].tobytes())
                done = c
                actions.append(index.ingest(path, exposure_ns=10_000_000, now_ns=1).action)
            grown = _dump(index)
    with FrameIndex(f"sqlite:///{tmp / f'once{seed}.sqlite'}") as index:
        assert index.ingest(path, exposure_ns=10_000_000, now_ns=1).action == "indexed"
        once = _dump(index)
    assert len(grown["frames"]) == n
    assert _verdicts(grown) == _verdicts(once)
    return actions


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), streamed=st.booleans())
def test_grown_index_equals_one_indexing(tmp_path_factory: pytest.TempPathFactory, seed: int,
                                         streamed: bool) -> None:  # fmt: skip
    _grow_and_compare(tmp_path_factory.mktemp("grow"), seed, streamed)


@pytest.mark.parametrize("streamed", [False, True])
@pytest.mark.parametrize("seed", [61, 149, 197])
def test_new_frames_that_change_a_verdict_reindex_the_file(
    tmp_path: Path, seed: int, streamed: bool
) -> None:
    # Found by a sweep of 300 seeds: a frame already indexed whose fault (e.g. a cadence
    # or spacing_jump) shows only once the frames after it are there. Appending alone, the
    # index kept its first verdict for these three (checked with the tail comparison off).
    actions = _grow_and_compare(tmp_path, seed, streamed)
    assert actions[0] == "indexed" and "indexed" in actions[1:], actions


def test_a_16_bit_ser_with_its_final_count_grows_without_alerts(tmp_path: Path) -> None:
    """A capture program that writes the final frame count first, then the frames: at exactly
    half of them, the size is also what 8-bit samples would take; the blocks say 16-bit, so
    no frame is flagged, and every growth appends."""
    sim = CameraSim(width=72, height=16, exposure_us=5000.0, frame_interval_us=6000.0)
    path = tmp_path / "video.ser"
    path.write_bytes(ser_header(sim, 20))
    with FrameIndex(f"sqlite:///{tmp_path / 'index.sqlite'}") as index:
        actions = []
        for k in range(20):
            with open(path, "ab") as fh:
                fh.write(ser_bytes(sim, k, 1))
            r = index.ingest(path, exposure_ns=5_000_000, now_ns=1)
            actions.append((r.action, r.status, r.total_frames))
            assert list_alerts(index) == [], (k, [a.to_dict() for a in list_alerts(index)])
        assert actions[0] == ("indexed", "partial", 1)
        assert actions[9] == ("appended", "partial", 10)  # half: 10 x 2304 = 20 x 1152 bytes
        assert actions[1:] == [("appended", "partial" if k < 19 else "ok", k + 1)
                               for k in range(1, 20)]  # fmt: skip
        frames = index.frames(file=str(path))
        assert [f.decode_reasons for f in frames] == [[]] * 20
        assert [f.sequence for f in frames] == [sim.sequence0 + k for k in range(20)]
    assert os.path.getsize(path) == 178 + 20 * 72 * 16 * 2


@pytest.mark.parametrize("streamed", [False, True])
def test_a_verdict_across_frames_without_a_block_reindexes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, streamed: bool
) -> None:
    # Frames 0..29 hold blocks, 30..49 none, and from frame 50 on the clock runs 15 ms late:
    # frame 29's cadence verdict depends on frame 50, its next frame with a block, 21
    # frames on. The tail compared is counted in frames with a block, so it reaches back.
    n, period = 56, 20_000_000
    imgs = np.zeros((n, H, W), dtype=np.uint16)
    for i in [*range(30), *range(50, n)]:
        end = 1_000_000_000 + i * period + (15_000_000 if i >= 50 else 0)
        embed_block(imgs[i], GpsBlock(1000 + i, 0, W, H, 481234567, 1149123456,
                                      _stamp(end - 10_000_000, PPS), _stamp(end, PPS),
                                      _stamp(end + 2_000_000, PPS), PPS))  # fmt: skip
    raw = imgs.astype("<u2").reshape(n, -1)
    path = tmp_path / "rec.ser"
    _recording(path)
    with open(path, "ab") as fh:
        fh.write(raw[:50].tobytes())
    if streamed:
        monkeypatch.setattr(qhytime.decode, "DECODE_CHUNK_FRAMES", 4)
        monkeypatch.setattr(qhytime.decode, "WHOLE_FILE_FRAMES", 0)
    with FrameIndex(f"sqlite:///{tmp_path / 'grown.sqlite'}") as index:
        assert index.ingest(path, exposure_ns=10_000_000, now_ns=1).action == "indexed"
        with open(path, "ab") as fh:
            fh.write(raw[50:].tobytes())
        assert index.ingest(path, exposure_ns=10_000_000, now_ns=1).action == "indexed"
        grown = _verdicts(_dump(index))
    with FrameIndex(f"sqlite:///{tmp_path / 'once.sqlite'}") as index:
        index.ingest(path, exposure_ns=10_000_000, now_ns=1)
        once = _verdicts(_dump(index))
    assert "cadence" in once[29]["codes"]
    assert grown == once


@pytest.mark.parametrize("streamed", [False, True])
def test_clean_growth_always_appends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, streamed: bool
) -> None:
    # Undamaged frames never change an earlier verdict: every growth is an append (the
    # tail compared the same way whole and in chunks, at chunk edges and within).
    rng = np.random.default_rng(3)
    n = 90
    raw = damaged_frames(n, rng, 0.0).astype("<u2").reshape(n, -1)
    if streamed:
        monkeypatch.setattr(qhytime.decode, "DECODE_CHUNK_FRAMES", 5)
        monkeypatch.setattr(qhytime.decode, "WHOLE_FILE_FRAMES", 0)
    path = tmp_path / "rec.ser"
    _recording(path)
    actions = []
    with FrameIndex(f"sqlite:///{tmp_path / 'grown.sqlite'}") as index:
        done = 0
        for c in (1, 2, 5, 9, 10, 11, 17, 30, 31, 64, 89, 90):
            with open(path, "ab") as fh:
                fh.write(raw[done:c].tobytes())
            done = c
            actions.append(index.ingest(path, exposure_ns=10_000_000, now_ns=1).action)
        assert len(index.frames(file=str(path))) == n
    assert actions == ["indexed"] + ["appended"] * 11
