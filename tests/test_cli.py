"""augbench.cli.run: a module's command line ends with its own status, whatever Python's teardown would do."""

import subprocess
import sys
import textwrap

# A module whose work is done when a native library aborts at exit (as Arrow's thread pools
# can, apache/arrow #34314), stood in for by an exit handler that aborts the process.
MODULE = textwrap.dedent(
    """
    import atexit, logging, os, sys
    from augbench.cli import run, start_logging

    def main():
        start_logging()
        atexit.register(os.abort)
        with open(sys.argv[2], "w") as out:
            out.write("written")
        logging.getLogger("stage").info("done")
        print("printed")
        outcome = sys.argv[1]
        if outcome == "fails":
            raise ValueError("broken input")
        if outcome == "refuses":
            sys.exit("error: bad option")
        return int(outcome)

    {call}
    """
)


def module(tmp_path, outcome: str, call: str = "run(main)") -> subprocess.CompletedProcess:
    script = tmp_path / "stage.py"
    script.write_text(MODULE.format(call=call))
    out = tmp_path / "out.txt"
    return subprocess.run([sys.executable, str(script), outcome, str(out)], capture_output=True, text=True)


def test_a_finished_module_exits_cleanly_though_the_teardown_would_abort(tmp_path):
    assert module(tmp_path, "0", call="main()").returncode == -6  # what a job met without run()
    finished = module(tmp_path, "0")
    assert finished.returncode == 0
    assert finished.stdout == "printed\n" and "INFO done" in finished.stderr
    assert (tmp_path / "out.txt").read_text() == "written"


def test_a_module_keeps_its_own_status_and_errors(tmp_path):
    assert module(tmp_path, "3").returncode == 3
    refused = module(tmp_path, "refuses")
    assert refused.returncode == 1 and "error: bad option" in refused.stderr
    failed = module(tmp_path, "fails")
    assert failed.returncode != 0 and "ValueError: broken input" in failed.stderr
