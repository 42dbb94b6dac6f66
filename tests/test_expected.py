"""A run's per-seed top-1 against the recorded figures: which methods differ, and by how much."""

import json

import pandas as pd
import pytest

from augbench import expected

AMD = {"cpu": "AMD EPYC", "cpu_kernels": "AVX2", "threads": 1, "gpu": None, "kernel_pins": {"MKL_CBWR": "COMPATIBLE"}}
XEON = {"cpu": "Intel(R) Xeon(R) Processor", "cpu_kernels": "AVX2", "threads": 1, "gpu": None}


def _run(tmp_path, figures: dict[tuple[str, int], float], trained_on: dict | None = None):
    for (method, seed), top1 in figures.items():
        path = tmp_path / "metrics" / method / f"seed{seed}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"top1": top1} | ({"trained_on": trained_on} if trained_on else {})))
    return tmp_path / "metrics"


def test_equal_figures_are_reported_as_such_and_a_moved_one_is_named(tmp_path):
    recorded = pd.DataFrame({"method": ["baseline", "baseline", "gen"], "seed": [0, 1, 0], "top1": [81.2, 80.0, 84.0]})
    run = expected.read_run(_run(tmp_path, {("baseline", 0): 81.2, ("gen", 0): 84.0, ("retr", 0): 70.0}))
    text = expected.report(expected.compare(run, recorded), run, recorded)
    assert text.startswith("All 2 per-seed top-1 figures equal the recorded ones.")
    assert "1 figure(s) of this run have no recorded counterpart" in text

    run.loc[run.method == "gen", "top1"] = 85.5
    compared = expected.compare(run, recorded)
    assert compared.differs.tolist() == [False, True]
    assert "gen seed 0: 85.50 here, 84.00 recorded (+1.50)" in expected.report(compared, run, recorded)
    assert not expected.compare(run, recorded, tolerance=2.0).differs.any()


def test_record_then_check_on_the_command_line(tmp_path, capsys):
    metrics = _run(tmp_path, {("baseline", 0): 81.2, ("gen", 0): 84.0})
    out = tmp_path / "expected.csv"
    expected.main(["record", "--metrics-dir", str(metrics), "--out", str(out)])
    assert pd.read_csv(out, keep_default_na=False).to_dict("list") == {
        "method": ["baseline", "gen"],
        "seed": [0, 0],
        "top1": [81.2, 84.0],
        "trained_on": ["", ""],  # metrics from before the training jobs named their machine
    }
    expected.main(["check", "--metrics-dir", str(metrics), "--expected", str(out), "--strict"])
    (metrics / "gen" / "seed0.json").write_text(json.dumps({"top1": 80.0}))
    with pytest.raises(SystemExit):
        expected.main(["check", "--metrics-dir", str(metrics), "--expected", str(out), "--strict"])
    assert "differ from the recorded ones (methods gen)" in capsys.readouterr().out


def test_a_run_without_metrics_is_named(tmp_path):
    with pytest.raises(ValueError, match="no metrics"):
        expected.read_run(tmp_path)


def test_a_report_of_differences_names_the_machines_it_compares(tmp_path, capsys):
    recorded_run = _run(tmp_path / "there", {("baseline", 0): 81.2, ("gen", 0): 84.0}, trained_on=XEON)
    recorded = tmp_path / "expected.csv"
    expected.main(["record", "--metrics-dir", str(recorded_run), "--out", str(recorded)])
    assert set(pd.read_csv(recorded).trained_on) == {"Intel(R) Xeon(R) Processor (AVX2 kernels, 1 thread(s))"}

    metrics = _run(tmp_path / "here", {("baseline", 0): 81.2, ("gen", 0): 83.0}, trained_on=AMD)
    expected.main(["check", "--metrics-dir", str(metrics), "--expected", str(recorded)])
    text = capsys.readouterr().out
    assert "1 of 2 per-seed top-1 figures differ" in text
    assert "This run trained on: AMD EPYC (AVX2 kernels, MKL_CBWR=COMPATIBLE, 1 thread(s))." in text
    assert "The recorded figures were trained on: Intel(R) Xeon(R) Processor (AVX2 kernels, 1 thread(s))." in text

    # Figures recorded before the machine was named (no trained_on column) are still compared.
    pd.read_csv(recorded)[["method", "seed", "top1"]].to_csv(recorded, index=False)
    expected.main(["check", "--metrics-dir", str(metrics), "--expected", str(recorded)])
    assert "The recorded figures were trained on: machines not named" in capsys.readouterr().out


def test_recorded_figures_without_their_columns_are_named(tmp_path):
    (tmp_path / "expected.csv").write_text("method,top1\nbaseline,81.2\n")
    with pytest.raises(ValueError, match=r"expected.csv lack column\(s\) \['seed'\]"):
        expected.read_expected(tmp_path / "expected.csv")


def test_a_file_of_several_machines_compares_a_run_with_its_own_machines_figures(tmp_path, capsys):
    recorded = tmp_path / "expected.csv"
    xeon_run = _run(tmp_path / "xeon", {("baseline", 0): 81.2, ("gen", 0): 84.0}, trained_on=XEON)
    expected.main(["record", "--metrics-dir", str(xeon_run), "--out", str(recorded)])
    amd_run = _run(tmp_path / "amd", {("baseline", 0): 80.4, ("gen", 0): 84.0}, trained_on=AMD)
    expected.main(["record", "--metrics-dir", str(amd_run), "--out", str(recorded), "--keep-other-machines"])
    assert "(2 of other machines kept)" in capsys.readouterr().out
    assert pd.read_csv(recorded).top1.tolist() == [81.2, 84.0, 80.4, 84.0]

    expected.main(["check", "--metrics-dir", str(amd_run), "--expected", str(recorded), "--strict"])
    text = capsys.readouterr().out
    assert text.startswith("All 2 per-seed top-1 figures equal the recorded ones.")
    assert "Compared with the figures recorded on: AMD EPYC (AVX2 kernels, MKL_CBWR=COMPATIBLE, 1 thread(s))." in text
    expected.main(["check", "--metrics-dir", str(xeon_run), "--expected", str(recorded), "--strict"])
    assert "recorded on: Intel(R) Xeon(R) Processor (AVX2 kernels, 1 thread(s))." in capsys.readouterr().out

    # A machine the file does not know is compared with the file's first one.
    other = _run(tmp_path / "other", {("baseline", 0): 80.4, ("gen", 0): 84.0}, trained_on=XEON | {"threads": 2})
    expected.main(["check", "--metrics-dir", str(other), "--expected", str(recorded)])
    text = capsys.readouterr().out
    assert "baseline seed 0: 80.40 here, 81.20 recorded (-0.80)" in text
    assert "The recorded figures were trained on: Intel(R) Xeon(R) Processor (AVX2 kernels, 1 thread(s))." in text
    assert "No figures of this run's kind of machine are recorded" in text

    # Recording a machine again replaces its figures and keeps the others'.
    moved = _run(tmp_path / "amd2", {("baseline", 0): 79.0, ("gen", 0): 84.0}, trained_on=AMD)
    expected.main(["record", "--metrics-dir", str(moved), "--out", str(recorded), "--keep-other-machines"])
    assert pd.read_csv(recorded).top1.tolist() == [81.2, 84.0, 79.0, 84.0]
    # Without the option the file holds the run's figures alone, as before.
    expected.main(["record", "--metrics-dir", str(moved), "--out", str(recorded)])
    assert pd.read_csv(recorded).top1.tolist() == [79.0, 84.0]
