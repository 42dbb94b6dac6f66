"""Compare a run's per-seed top-1 with the figures recorded for it, and say which methods differ.

    python -m augbench.expected check --metrics-dir results/demo/metrics \
        --expected resources/miniworld/expected.csv
    python -m augbench.expected record --metrics-dir results/demo/metrics --out expected.csv \
        [--keep-other-machines]

The demo is deterministic for a given config, seeds and threads per job on one kind of
machine, so its per-seed top-1 is recorded in ``resources/miniworld/expected.csv``
(method, seed, top1; trained_on in files recorded since it existed) and ``make demo`` checks
every run against it. Each figure names the machine its model was trained on (``trained_on``:
the CPU and the kernels torch chose, or the GPU), as the training job recorded it. A file may
hold the figures of several kinds of machine (``record --keep-other-machines`` adds a run's
beside the others'): a run is compared with the figures of its own kind of machine where the
file has them, and otherwise with those of the file's first machine, its reference. A
difference says which method and seed moved and by how much, and which machines were
compared; on another kind of machine (other BLAS kernels, other thread counts) small
differences are expected and reported, not hidden.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from augbench.cli import run
from augbench.files import read_json

COLUMNS = ["method", "seed", "top1", "trained_on"]


def machine_name(machine: dict | None) -> str:
    """A training machine in a few words: its GPU, or its CPU and the kernels torch chose there
    ('' where the metrics predate the record)."""
    if not machine:
        return ""
    if machine.get("gpu"):
        return machine["gpu"]
    pins = "".join(f", {name}={value}" for name, value in sorted(machine.get("kernel_pins", {}).items()))
    return f"{machine['cpu']} ({machine['cpu_kernels']} kernels{pins}, {machine['threads']} thread(s))"


def read_run(metrics_dir: str | Path) -> pd.DataFrame:
    """method, seed, top1 and trained_on of every ``<method>/seed<k>.json`` under a run's metrics folder."""
    rows = []
    for path in sorted(Path(metrics_dir).glob("*/seed*.json")):
        metrics = read_json(path)
        rows.append(
            {
                "method": path.parent.name,
                "seed": int(path.stem.removeprefix("seed")),
                "top1": metrics["top1"],
                "trained_on": machine_name(metrics.get("trained_on")),
            }
        )
    if not rows:
        raise ValueError(f"no metrics (<method>/seed<k>.json) under {metrics_dir}")
    return pd.DataFrame(rows, columns=COLUMNS)


def read_expected(path: str | Path) -> pd.DataFrame:
    """Recorded figures; files recorded before the machine was named have no trained_on."""
    frame = pd.read_csv(path, keep_default_na=False)
    missing = {"method", "seed", "top1"} - set(frame.columns)
    if missing:
        raise ValueError(f"recorded figures {path} lack column(s) {sorted(missing)}")
    if "trained_on" not in frame:
        frame["trained_on"] = ""
    return frame[COLUMNS]


def reference_figures(run: pd.DataFrame, expected: pd.DataFrame) -> pd.DataFrame:
    """One recorded figure per (method, seed) of the run: the one recorded on the machine its model
    was trained on where the file has it, otherwise the one of the file's first machine."""
    run, expected = (frame if "trained_on" in frame else frame.assign(trained_on="") for frame in (run, expected))
    same_machine = expected.merge(run[["method", "seed", "trained_on"]], on=["method", "seed", "trained_on"])
    reference = expected[expected.trained_on == expected.trained_on.iloc[0]] if len(expected) else expected
    others = reference.merge(same_machine[["method", "seed"]], how="left", indicator=True)
    others = others[others._merge == "left_only"].drop(columns="_merge")
    return pd.concat([same_machine, others], ignore_index=True).drop_duplicates(["method", "seed"])


def compare(run: pd.DataFrame, expected: pd.DataFrame, tolerance: float = 0.0) -> pd.DataFrame:
    """The (method, seed) pairs both have, with the run's and the expected top-1 (of the machine
    :func:`reference_figures` picks), whether they differ by more than ``tolerance`` points, and
    the machine each expected figure was recorded on."""
    figures = ["method", "seed", "top1"]
    both = run[figures].merge(reference_figures(run, expected), on=["method", "seed"], suffixes=("", "_expected"))
    both["difference"] = both.top1 - both.top1_expected
    both["differs"] = both.difference.abs() > tolerance
    return both


def report(compared: pd.DataFrame, run: pd.DataFrame, expected: pd.DataFrame) -> str:
    """A few lines: how many figures agree, and each one that differs."""
    lines = []
    if compared.empty:
        return "No method and seed of this run is among the recorded ones: nothing to compare."
    differing = compared[compared.differs]
    if differing.empty:
        lines.append(f"All {len(compared)} per-seed top-1 figures equal the recorded ones.")
    else:
        methods = sorted(set(differing.method))
        lines.append(
            f"{len(differing)} of {len(compared)} per-seed top-1 figures differ from the recorded ones "
            f"(methods {', '.join(methods)}):"
        )
        for row in differing.itertuples(index=False):
            lines.append(
                f"  {row.method} seed {row.seed}: {row.top1:.2f} here, {row.top1_expected:.2f} recorded "
                f"({row.difference:+.2f})"
            )
        lines.append(f"This run trained on: {_machines(run.merge(differing[['method', 'seed']]))}.")
        lines.append(f"The recorded figures were trained on: {_machines(differing)}.")
        lines.append("Figures move between kinds of CPU or GPU: docs/results.md says which settings pin them.")
        known = set(expected.trained_on) if "trained_on" in expected else set()
        if set(run.trained_on) - known - {""}:
            lines.append(
                "No figures of this run's kind of machine are recorded: `python -m augbench.expected record "
                "--keep-other-machines` adds them beside the others."
            )
    if differing.empty or "trained_on" in expected and expected.trained_on.nunique() > 1:
        lines.append(f"Compared with the figures recorded on: {_machines(compared)}.")
    unrecorded = len(run) - len(compared)
    if unrecorded:
        lines.append(f"{unrecorded} figure(s) of this run have no recorded counterpart (other methods or seeds).")
    return "\n".join(lines)


def recorded(run: pd.DataFrame, kept: pd.DataFrame | None = None) -> pd.DataFrame:
    """The figures to record: the run's, after ``kept`` (figures recorded before) less those of
    the machines the run trained on."""
    run = run.sort_values(["method", "seed"])
    if kept is None:
        return run
    return pd.concat([kept[~kept.trained_on.isin(set(run.trained_on))], run], ignore_index=True)


def _machines(figures: pd.DataFrame) -> str:
    trained_on = figures["trained_on"] if "trained_on" in figures else pd.Series("", index=figures.index)
    names = sorted(set(trained_on) - {""})
    unnamed = (trained_on == "").any()
    if not names:
        return "machines not named (figures from before the training jobs recorded them)"
    return "; ".join(names) + (" and machines not named" if unnamed else "")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="compare a run with the recorded figures")
    check.add_argument("--metrics-dir", required=True)
    check.add_argument("--expected", required=True)
    check.add_argument("--tolerance", type=float, default=0.0, help="points of top-1 a figure may move")
    check.add_argument("--strict", action="store_true", help="exit 1 when a figure differs")
    record = commands.add_parser("record", help="write a run's per-seed top-1 as the recorded figures")
    record.add_argument("--metrics-dir", required=True)
    record.add_argument("--out", required=True)
    record.add_argument(
        "--keep-other-machines",
        action="store_true",
        help="keep the figures --out holds of machines other than this run's (a file of several kinds of machine)",
    )
    args = parser.parse_args(argv)
    run = read_run(args.metrics_dir)
    if args.command == "record":
        kept = read_expected(args.out) if args.keep_other_machines and Path(args.out).exists() else None
        figures = recorded(run, kept)
        figures.to_csv(args.out, index=False, float_format="%.4f")
        kept_count = len(figures) - len(run)
        print(f"recorded {len(run)} per-seed top-1 figures in {args.out} ({kept_count} of other machines kept)")
        return
    expected = read_expected(args.expected)
    compared = compare(run, expected, args.tolerance)
    print(report(compared, run, expected))
    if args.strict and compared.differs.any():
        sys.exit(1)


if __name__ == "__main__":
    run(main)
