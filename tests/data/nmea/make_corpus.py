"""Write the NMEA test corpus and its hand-labelled truth (run once; both files are kept).

Every item of the stream carries the label of what it is (by the rules in
qhytime/service/gnss.py's notes): the expected counts in corpus.json are the sums of those
labels, not the output of the parser under test. Checksums are the NMEA XOR, computed here.

    python tests/data/nmea/make_corpus.py
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

HERE = Path(__file__).parent


def nmea(body: str) -> bytes:
    """A sentence with its checksum (XOR of the characters between $ and *) and CRLF."""
    c = 0
    for ch in body:
        c ^= ord(ch)
    return f"${body}*{c:02X}\r\n".encode("ascii")


def bad_checksum(body: str) -> bytes:
    good = nmea(body)
    wrong = (int(good[-4:-2], 16) ^ 0x5A) & 0xFF
    return good[:-4] + f"{wrong:02X}".encode() + b"\r\n"


ITEMS: list[tuple[bytes, dict[str, int]]] = []


def add(data: bytes, **labels: int) -> None:
    ITEMS.append((data, labels))


def main() -> None:
    """Build the corpus, label by label, and write it with its truth."""
    # 03:12:45 UTC on 2025-08-02: the receiver has a 3-D fix with 9 satellites
    add(nmea("GPZDA,031245.00,02,08,2025,00,00"), sentences=1)
    add(nmea("GPRMC,031245.00,A,5212.9018,N,00052.3572,W,0.0,0.0,020825,,,A"), sentences=1)
    add(nmea("GPGGA,031245.00,5212.9018,N,00052.3572,W,1,09,0.9,102.5,M,47.0,M,,"), sentences=1)
    add(nmea("GPGSA,A,3,04,05,09,12,24,25,29,31,,,,,1.8,0.9,1.5"), sentences=1)
    add(nmea("GPGSV,3,1,11,04,40,083,46,05,17,308,41,09,07,344,39,12,22,228,45"), sentences=1)
    add(bad_checksum("GPRMC,031246.00,A,5212.9018,N,00052.3572,W,0.0,0.0,020825,,,A"), bad_checksum=1)
    add(b"$GPGGA,031246.00,5212.90\r\n", partial=1)  # cut line: no *hh
    add(b"\x00\xff\xfe\x13garbage bytes\r\n", garbage=1)  # no $ at all
    add(b"\xde\xad" + nmea("GPRMC,031246.00,A,5212.9018,N,00052.3572,W,0.0,0.0,020825,,,A"),
        garbage=1, sentences=1)  # junk before a good sentence
    add(b"$GPGGA,031247.00,52" + nmea("GPZDA,031247.00,02,08,2025,00,00"),
        partial=1, sentences=1)  # a sentence cut off by the next "$"
    add(bytes([0xAA]) * 700 + b"\r\n", garbage=2)  # 512 bytes without a line end, then 188 more
    add(nmea("GPXYZ,1,2,3"), unknown=1)  # well formed, a type pynmea2 does not know
    add(b"$GPRMC,0312\xb047.00,A*00\r\n", garbage=1)  # a non-ASCII byte inside a sentence
    add(bad_checksum("GPGSV,3,2,11,24,40,083,46,25,17,308,41,29,07,344,39,31,22,228,45"),
        bad_checksum=1)
    silence_after = sum(len(d) for d, _ in ITEMS)
    # the receiver goes quiet mid-sentence; when it speaks again the fragment is cut off
    add(b"$GPGGA,031248.00,5212.9", partial=1)
    silence_after += len(ITEMS[-1][0])
    add(nmea("GPRMC,031251.00,A,5212.9020,N,00052.3570,W,0.0,0.0,020825,,,A"), sentences=1)
    add(nmea("GPGGA,031251.00,5212.9020,N,00052.3570,W,2,10,0.8,103.0,M,47.0,M,,"), sentences=1)
    add(nmea("GPGSA,A,3,04,05,09,12,24,25,29,31,02,,,,1.7,0.8,1.4"), sentences=1)
    add(nmea("GPGSV,3,1,12,04,40,083,46,05,17,308,41,09,07,344,39,12,22,228,45"), sentences=1)
    add(b"\r\n\r\n", )  # blank lines: nothing

    counts: Counter[str] = Counter()
    for _, labels in ITEMS:
        counts.update(labels)
    data = b"".join(d for d, _ in ITEMS)
    truth = {
        "silence_after_byte": silence_after,
        "counts": {k: counts.get(k, 0) for k in
                   ("sentences", "bad_checksum", "partial", "garbage", "unknown", "malformed")},
        "bytes": len(data),
        "final": {  # from the last RMC/GGA/GSA/GSV, by hand: 52 deg 12.9020' N, 0 deg 52.3570' W
            "utc": "2025-08-02T03:12:51.000000000",
            "fix_quality": 2,
            "fix_type": 3,
            "satellites": 10,
            "satellites_in_view": 12,
            "latitude_deg": 52 + 12.9020 / 60,
            "longitude_deg": -(52.3570 / 60),
            "altitude_m": 103.0,
        },
        "before_silence": {"utc": "2025-08-02T03:12:47.000000000", "fix_quality": 1, "satellites": 9},
    }
    (HERE / "corpus.nmea").write_bytes(data)
    (HERE / "corpus.json").write_text(json.dumps(truth, indent=2) + "\n")
    print(json.dumps(truth["counts"]), len(data), "bytes; silence after", silence_after)


if __name__ == "__main__":
    main()
