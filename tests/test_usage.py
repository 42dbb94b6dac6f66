"""augbench.usage: each job's record of its wall time, CPU time and peak memory, as the cost table reads it."""

import signal
import subprocess
import sys
import textwrap

import pytest

from augbench import cost, usage

# Burns about 0.4 CPU-seconds and holds about 60 MB, then exits with the status given.
BUSY = textwrap.dedent(
    """
    import sys, time
    held = bytearray(60 * 2**20)
    start = time.process_time()
    while time.process_time() - start < 0.4:
        pass
    sys.exit(int(sys.argv[1]))
    """
)


def test_a_finished_job_records_its_exact_cpu_time_and_peak_memory(tmp_path):
    record = tmp_path / "train" / "gen" / "seed0.tsv"
    assert usage.run_measured([sys.executable, "-c", BUSY, "0"], record) == 0
    wall, cpu = cost.read_benchmark(record)
    assert 0.4 <= cpu <= wall + 0.1
    columns = record.read_text().splitlines()[0].split("\t")
    max_rss = float(record.read_text().splitlines()[1].split("\t")[columns.index("max_rss")])
    assert max_rss >= 60


def test_cpu_time_counts_the_processes_the_command_waited_for(tmp_path):
    """torchrun's workers and data-loader workers are the job's too."""
    parent = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {BUSY!r}, '0'], check=True)"
    record = tmp_path / "job.tsv"
    assert usage.run_measured([sys.executable, "-c", parent], record) == 0
    assert cost.read_benchmark(record)[1] >= 0.4


def test_a_failed_job_passes_its_status_on_and_leaves_no_record(tmp_path):
    record = tmp_path / "job.tsv"
    record.write_text("s\tcpu_time\n1\t1\n")  # an earlier run's: its outputs are gone with this failure
    assert usage.run_measured([sys.executable, "-c", BUSY, "3"], record) == 3
    assert not record.exists()


def test_a_command_that_cannot_start_is_named(tmp_path):
    with pytest.raises(SystemExit, match="cannot run /nowhere/python"):
        usage.run_measured(["/nowhere/python"], tmp_path / "job.tsv")
    with pytest.raises(SystemExit):
        usage.main(["--record", str(tmp_path / "job.tsv"), "--"])


def test_signals_reach_the_command_and_its_status_comes_back(tmp_path):
    """SLURM's warning before a time limit, or a cancelled run, is meant for the command, not the wrapper."""
    marker = tmp_path / "asked to stop"
    command = textwrap.dedent(
        f"""
        import pathlib, signal, sys, time
        def stop(number, frame):
            pathlib.Path({str(marker)!r}).write_text(str(number))
            sys.exit(7)
        signal.signal(signal.SIGUSR1, stop)
        print("ready", flush=True)
        time.sleep(60)
        """
    )
    record = tmp_path / "job.tsv"
    wrapper = subprocess.Popen(
        [sys.executable, "-m", "augbench.usage", "--record", str(record), "--", sys.executable, "-c", command],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert wrapper.stdout.readline().strip() == "ready"
    wrapper.send_signal(signal.SIGUSR1)
    assert wrapper.wait(timeout=30) == 7
    assert marker.read_text() == str(int(signal.SIGUSR1)) and not record.exists()

    # A command ended by a signal: the status a shell reports for it.
    sleeper = "import time; print('ready', flush=True); time.sleep(60)"
    wrapper = subprocess.Popen(
        [sys.executable, "-m", "augbench.usage", "--record", str(record), "--", sys.executable, "-c", sleeper],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert wrapper.stdout.readline().strip() == "ready"
    wrapper.terminate()
    assert wrapper.wait(timeout=30) == 128 + signal.SIGTERM
