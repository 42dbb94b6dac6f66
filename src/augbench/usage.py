"""Run one job's command and record what it used: wall time, CPU time and peak memory.

    python -m augbench.usage --record benchmarks/runs/demo/train/gen/seed0.tsv -- \
        python -m augbench.train ...

Every rule runs its module through this, and ``augbench.cost`` reads the records. The file has
the columns of a Snakemake benchmark file that the cost table uses (``s``, ``h:m:s``,
``max_rss``, ``cpu_time``, ``mean_load``), so it can be read as one. Snakemake's own
``benchmark:`` was used before: it samples the job's processes twice a second for 15 s, then
every 30 s, and keeps the last sample, so it misses up to 30 s of each job's CPU time (a 42 s
personalisation recorded 15 CPU-seconds) and the peak memory between samples; each sample
also reads the job's memory maps (12 ms for a process that imported torch), which the
scheduler pays on the job's cores. Here the kernel's own account of the finished command
(``wait4``) is exact and costs nothing: CPU time of the command and every process it waited
for (torchrun's workers, data-loader workers), and the peak resident memory of the largest
one of them (``max_rss``, MiB; processes running at once are not summed).

The record is written only when the command succeeds; a failed run removes an earlier
record, as its outputs are gone too. Signals the job receives (a cancelled run, SLURM's
warning before a time limit or a requeue) are passed on to the command, and the exit status
is the command's (128 + the signal's number where a signal ended it, as a shell reports it).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

COLUMNS = ["s", "h:m:s", "max_rss", "cpu_time", "mean_load"]
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)


def clock(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def record_line(wall: float, cpu: float, max_rss_mb: float) -> str:
    values = [f"{wall:.4f}", clock(wall), f"{max_rss_mb:.2f}", f"{cpu:.2f}", f"{100 * cpu / max(wall, 1e-9):.2f}"]
    return "\t".join(COLUMNS) + "\n" + "\t".join(values) + "\n"


def write_record(path: str | Path, wall: float, cpu: float, max_rss_mb: float) -> None:
    """Write one job's record whole (a reader never sees half of it). Not files.atomic_path:
    that module imports pandas, half a second of start-up that every job would pay here."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{os.getpid()}")
    staging.write_text(record_line(wall, cpu, max_rss_mb))
    os.replace(staging, path)


def run_measured(command: list[str], record: str | Path) -> int:
    """Run ``command``, wait for it, record its use on success; return its exit status."""
    if not command:
        raise ValueError("no command to run: give it after --")
    started: list[subprocess.Popen] = []

    def forward(number, frame):
        # os.kill, not Popen.send_signal: that polls, and could reap the command before wait4
        # does. Until wait4 reaps it, the command's pid is its own, even once it has exited.
        if started and started[0].returncode is None:
            try:
                os.kill(started[0].pid, number)
            except ProcessLookupError:  # reaped a moment ago
                pass

    # Installed before the command starts, so that no signal finds the wrapper undefended; the
    # command starts with the default handlers (exec resets them). A signal the job was started
    # ignoring stays ignored, for the command too.
    previous = {
        sig: signal.signal(sig, forward) for sig in FORWARDED_SIGNALS if signal.getsignal(sig) is not signal.SIG_IGN
    }
    start = time.monotonic()
    try:
        try:
            started.append(subprocess.Popen(command))
        except OSError as error:
            raise SystemExit(f"cannot run {command[0]}: {error}") from error
        child = started[0]
        # A forwarded signal does not end the wait: Python resumes it after the handler (PEP 475).
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    wall = time.monotonic() - start
    code = child.returncode
    if code == 0:
        # ru_maxrss is in KiB on Linux.
        write_record(record, wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024)
    else:
        Path(record).unlink(missing_ok=True)
    return 128 - code if code < 0 else code


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--record", required=True, help="the record to write (.tsv), as augbench.cost reads it")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- and the command to run")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command to run: give it after --")
    sys.exit(run_measured(command, args.record))


if __name__ == "__main__":
    main()
