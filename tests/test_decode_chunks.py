"""decode_chunks: a long file decoded in chunks gives exactly the whole file's decoding.

Truth is the whole-file decode (:func:`decode_reader`, checked on its own against the
reference frames elsewhere): laid end to end, the chunks must hold the same blocks, times and
reasons for every frame, whatever the chunk size, on sequences damaged every way the checks
look at (bytes, sequence numbers, stamps, sizes, zeroed blocks, flipped frames).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from damaged import H, W
from damaged import damaged_frames as _frames
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qhytime.decode import decode_chunks, decode_reader
from qhytime.readers import ArrayReader, open_frames
from qhytime.readers.serfile import write_ser


def _records(chunks: list) -> list[dict]:
    out = []
    for c in chunks:
        for rec in c.frames():
            out.append({**rec.to_dict(), "origin": rec.origin, "flipped": rec.flipped,
                        "nominal": rec.nominal_difference_ns})  # fmt: skip
    return out


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 90), chunk=st.integers(1, 20),
       damage=st.sampled_from([0.0, 0.03, 0.1, 0.3]),
       exposure=st.sampled_from([None, 10_000_000]), nominal=st.booleans())  # fmt: skip
def test_chunks_equal_whole(seed, n, chunk, damage, exposure, nominal):
    rng = np.random.default_rng(seed)
    reader = ArrayReader(_frames(n, rng, damage), exposure_ns=exposure)
    prev = (123, W, H) if rng.random() < 0.3 else None
    whole = decode_reader(reader, nominal_clock=nominal, previous=prev)
    chunks = list(decode_chunks(reader, chunk_frames=chunk, nominal_clock=nominal, previous=prev))
    assert [c.first_frame for c in chunks] == list(range(0, n, chunk)) or n <= chunk
    assert sum(len(c) for c in chunks) == n
    assert _records(chunks) == _records([whole])
    if damage == 0.0 and prev is None:  # the undamaged sequence is good: the test sees damage
        assert not whole.reasons.flagged.size
    for c in chunks:
        for name in ("start", "end", "now"):
            want = whole.unix_ns[name][c.first_frame : c.first_frame + len(c)]
            np.testing.assert_array_equal(c.unix_ns[name], want)


def test_chunks_of_a_damaged_ser(tmp_path):
    """A SER file (the reader that reads ranges from its memmap), damaged, 3 chunk sizes."""
    rng = np.random.default_rng(7)
    imgs = _frames(300, rng, 0.05)
    path = tmp_path / "v.ser"
    write_ser(path, imgs)
    with open_frames(path) as reader:
        whole = _records([decode_reader(reader)])
        flagged = sum(1 for r in whole if r["reasons"])
        assert 5 < flagged < 150  # the damage is seen, most frames are good
        for chunk in (7, 64, 299):
            assert _records(list(decode_chunks(reader, chunk_frames=chunk))) == whole


def test_one_chunk_when_short_or_not_ranged():
    with open_frames("tests/data/fits16_000.fits") as reader:
        assert not reader.ranged_blocks
        assert len(list(decode_chunks(reader, chunk_frames=1))) == 1
    with open_frames("tests/data/video16.ser") as reader:
        (only,) = decode_chunks(reader, chunk_frames=25)
        assert only.first_frame == 0 and len(only) == 25


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_chunk_size_checked(bad):
    with open_frames("tests/data/video16.ser") as reader, pytest.raises(ValueError, match="chunk_frames"):
        next(decode_chunks(reader, chunk_frames=bad))


def test_decode_paths_in_chunks_equal_whole(tmp_path, monkeypatch):
    """What ``qhytime decode`` prints: the same records chunked or whole, a truncated file's
    error record last, and the files around it untouched."""
    import qhytime.decode
    from qhytime.decode import decode_paths

    monkeypatch.setattr(qhytime.decode, "WHOLE_FILE_FRAMES", 0)  # chunk even short files

    rng = np.random.default_rng(11)
    path = tmp_path / "v.ser"
    write_ser(path, _frames(200, rng, 0.05))
    cut = tmp_path / "cut.ser"
    data = path.read_bytes()
    cut.write_bytes(data[: len(data) - 7000])  # the last frames missing (and the trailer)
    files = ["tests/data/video16.ser", str(path), str(cut), "tests/data/fits16_000.fits"]
    whole = [r.to_dict() for r in decode_paths(files, chunk_frames=None)]
    for chunk in (1, 9, 64):
        assert [r.to_dict() for r in decode_paths(files, chunk_frames=chunk)] == whole
    tail = [r for r in whole if r["file"] == str(cut)]
    assert tail[-1]["status"] == "error" and tail[-1]["frame"] == len(tail) - 1


@settings(max_examples=300, deadline=None)
@given(values=st.lists(st.integers(-(10**15), 10**15), min_size=1, max_size=80),
       cuts=st.lists(st.integers(0, 80), max_size=4), floats=st.booleans())  # fmt: skip
def test_counted_values_median_and_first_tags(values, cuts, floats):
    """The cadence counted part by part: numpy.median of all the values, exactly, and each
    distinct value tagged with the first place it occurred."""
    from qhytime.validity import CountedValues

    v = np.array(values, dtype=np.int64)
    if floats:
        v = v.astype(np.float64) / 7.0
    c = CountedValues(v.dtype)
    edges = sorted({0, len(v), *(min(k, len(v)) for k in cuts)})
    for a, b in itertools.pairwise(edges):
        c.add(v[a:b], np.arange(a, b))
    assert c.total() == len(v)
    assert c.median() == float(np.median(v))
    first = {x: i for i, x in reversed(list(enumerate(v.tolist())))}
    assert c.tags.tolist() == [first[x] for x in c.values.tolist()]
