"""`make demo` on a fresh clone of this checkout's commit, with this checkout's installed venv:
its wall time and the peak memory of its largest process (a job; GNU time's maximum RSS
of the process tree, as wait4 reports it).
"""

from __future__ import annotations

import re
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def measure() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        clone = Path(tmp) / "augbench"
        subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
        (clone / ".venv").symlink_to(REPO / ".venv")  # installed already: the demo's own time is measured
        start = time.perf_counter()
        result = subprocess.run(
            # -o: the shared venv counts as installed (a reinstall would repoint it at the clone).
            ["/usr/bin/time", "-v", "make", "-o", ".venv/.installed", "demo"],
            cwd=clone,
            capture_output=True,
            text=True,
            check=True,
        )
        seconds = time.perf_counter() - start
    peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr).group(1))
    jobs = re.findall(r"(\d+) of (\d+) steps \(100%\) done", result.stdout + result.stderr)
    print(f"   {seconds:.0f} s, peak {peak_kb / 1024:.0f} MB, {jobs[-1][1] if jobs else '?'} jobs")
    return {"demo_seconds": seconds, "demo_peak_rss_mb": peak_kb / 1024}
