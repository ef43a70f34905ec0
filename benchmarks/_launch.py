"""Run a command and write its wall time, exit code and own peak RSS as JSON (stdlib only).

``python -I -S _launch.py OUT CMD...``. Why a launcher: Linux keeps a process's ``ru_maxrss``
across ``exec``, and a child started by ``fork``/``vfork`` + ``exec`` inherits, at its exec,
the peak RSS of the memory it was started from. A command started straight from the
benchmark process (hundreds of MiB) would report at least that. Started from this small
process instead, its ``ru_maxrss`` (from ``wait4``) is its own, with this launcher's ~10 MiB
as the floor, well under any qhytime command's own peak.
"""

import json
import os
import sys
import time


def main() -> int:
    out, cmd = sys.argv[1], sys.argv[2:]
    t0 = time.perf_counter()
    pid = os.posix_spawnp(cmd[0], cmd, os.environ)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    with open(out, "w") as fh:
        json.dump({"wall_s": wall, "maxrss_kib": usage.ru_maxrss, "returncode": code}, fh)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
