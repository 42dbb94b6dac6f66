"""Summarise the per-seed metrics of every method into one table.

    python -m augbench.aggregate --metrics results/demo/metrics/baseline/seed0.json ... \
        --method-kinds baseline=real retrieve_text=retrieve ... --added added.csv ... --out-dir results/demo

Writes ``summary.csv`` and ``summary.md`` (one row per method: method, kind, n_seeds,
top1_mean, top1_std, n_added_per_class) and prints the table. The images that could not
be read and were skipped (``--unreadable STAGE=CSV``, one list per stage) are counted in
``summary.md`` and listed, with the reason for each, in ``unreadable.csv``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from augbench.cli import start_logging
from augbench.files import atomic_path, read_classes, read_json, read_manifest, write_text

log = logging.getLogger(__name__)

COLUMNS = ["method", "kind", "n_seeds", "top1_mean", "top1_std", "n_added_per_class"]


def method_of(metrics_path: str) -> str:
    """Metrics live at ``.../metrics/<method>/seed<k>.json``."""
    return Path(metrics_path).parent.name


def summarise(metrics_paths: list[str], kinds: dict[str, str], added: dict[str, float]) -> pd.DataFrame:
    top1: dict[str, list[float]] = {}
    for path in metrics_paths:
        top1.setdefault(method_of(path), []).append(read_json(path)["top1"])
    unknown = set(top1) - set(kinds)
    if unknown:
        raise ValueError(f"metrics for method(s) {sorted(unknown)} that have no kind")
    rows = [
        {
            "method": method,
            "kind": kinds[method],
            "n_seeds": len(values),
            "top1_mean": float(np.mean(values)),
            # Sample std over seeds, as papers report mean ± std; 0 for a single seed.
            "top1_std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
            "n_added_per_class": added.get(method, 0.0),
        }
        for method, values in top1.items()
    ]
    return pd.DataFrame(rows, columns=COLUMNS)


def added_per_class(manifest: str, n_classes: int) -> float:
    return len(read_manifest(manifest)) / n_classes


def to_markdown(table: pd.DataFrame) -> str:
    header = "| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS) + "\n"
    lines = [
        f"| {r.method} | {r.kind} | {r.n_seeds} | {r.top1_mean:.2f} | {r.top1_std:.2f} | {r.n_added_per_class:g} |"
        for r in table.itertuples()
    ]
    return header + "\n".join(lines) + "\n"


def gather_unreadable(lists: list[tuple[str, str]]) -> pd.DataFrame:
    """One table of the skipped images: stage, path, label, reason."""
    frames = [read_manifest(path).assign(stage=stage) for stage, path in lists]
    columns = ["stage", "path", "label", "reason"]
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True).reindex(columns=columns)


def unreadable_markdown(unreadable: pd.DataFrame, stages: list[str]) -> str:
    if unreadable.empty:
        return "\nEvery image read was readable; none was skipped.\n"
    counts = unreadable.stage.value_counts()
    lines = [f"| {stage} | {int(counts.get(stage, 0))} |" for stage in dict.fromkeys(stages)]
    return (
        f"\n{len(unreadable)} unreadable image(s) were skipped (each listed with its reason in unreadable.csv):\n\n"
        "| stage | skipped |\n|---|---|\n" + "\n".join(lines) + "\n"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--metrics", nargs="+", required=True, help="per-seed metrics JSON files")
    parser.add_argument("--method-kinds", nargs="+", required=True, metavar="METHOD=KIND")
    parser.add_argument("--added", nargs="*", default=[], metavar="METHOD=MANIFEST", help="added-image manifests")
    parser.add_argument("--classes", required=True, help="class list, for images added per class")
    parser.add_argument(
        "--unreadable",
        action="append",
        default=[],
        metavar="STAGE=CSV",
        help="a list of the images a stage skipped; repeat for each",
    )
    parser.add_argument("--out-dir", required=True)
    args = parser.parse_args(argv)
    start_logging()
    kinds = dict(item.split("=", 1) for item in args.method_kinds)
    n_classes = len(read_classes(args.classes))
    added = {m: added_per_class(p, n_classes) for m, p in (item.split("=", 1) for item in args.added)}
    table = summarise(args.metrics, kinds, added)
    order = {method: i for i, method in enumerate(kinds)}
    table = table.sort_values("method", key=lambda col: col.map(order)).reset_index(drop=True)
    out_dir = Path(args.out_dir)
    with atomic_path(out_dir / "summary.csv") as tmp:
        table.to_csv(tmp, index=False, float_format="%.4f")
    lists = [tuple(item.split("=", 1)) for item in args.unreadable]
    unreadable = gather_unreadable(lists)
    with atomic_path(out_dir / "unreadable.csv") as tmp:
        unreadable.to_csv(tmp, index=False)
    report = to_markdown(table) + unreadable_markdown(unreadable, [stage for stage, _ in lists])
    write_text(out_dir / "summary.md", report)
    print(report)


if __name__ == "__main__":
    main()
