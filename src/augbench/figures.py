"""Figures of a finished run: accuracy per method, accuracy against cost, and image grids.

    python -m augbench.figures --summary summary.csv --cost cost.csv --classes classes.txt \
        --subset subset/train.csv --added METHOD=MANIFEST ... --grid-classes 3 --out-dir figures

Writes ``top1.png`` (top-1 per method, grouped by kind, the baseline as a line),
``top1_vs_cost.png`` (top-1 against each method's own GPU hours),
``top1_vs_added.png`` (top-1 against images added per class, where entries of the
registry that differ only in ``per_class`` sweep the amount), with ``--diagnostics`` one figure per
diagnostic under ``gain_vs_diagnostics/`` (each method's Δ top-1 over baseline against it) and,
under ``grids/``, one image grid per chosen class: a row of the class's real images,
then a row of what each method added for it.

The error bars are ± the sample std over seeds, the spread ``summary.md`` prints beside each
mean (``error_bars``); a method with one seed has none, as its spread is not known. Whether
two methods differ is read from the paired intervals in ``summary.md``, not from bars overlapping.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display (cluster nodes have none)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from augbench.cli import run, start_logging  # noqa: E402
from augbench.files import atomic_path, read_classes, read_manifest  # noqa: E402
from augbench.gain_correlation import diagnostic_columns, gain_correlation  # noqa: E402
from augbench.images import UnreadableImage, load_rgb  # noqa: E402

log = logging.getLogger(__name__)

KINDS = ["real", "retrieve", "generate"]
COLOURS = {"real": "#4d4d4d", "retrieve": "#1b9e77", "generate": "#d95f02"}


def _save(figure, path: Path) -> None:
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(figure)


def error_bars(summary: pd.DataFrame) -> pd.Series:
    """Half-height of each method's error bar: the sample std over seeds that ``summary.md`` prints
    as mean ± std; NaN (no bar) for a method with one seed, whose spread is not known."""
    return summary.top1_std.where(summary.n_seeds >= 2)


def _spread_note(bars: pd.Series) -> str:
    return "bars: ± std over seeds" if bars.notna().any() else "one seed: spread not known, no bars"


def plot_top1(summary: pd.DataFrame, out: Path) -> None:
    order = summary.assign(rank=summary.kind.map(KINDS.index)).sort_values("rank", kind="stable")
    bars = error_bars(order)
    figure, axes = plt.subplots(figsize=(max(6, 0.55 * len(order)), 4))
    positions = np.arange(len(order))
    axes.bar(positions, order.top1_mean, color=[COLOURS.get(kind, "grey") for kind in order.kind])
    drawn = bars.notna().to_numpy()
    if drawn.any():
        axes.errorbar(positions[drawn], order.top1_mean[drawn], yerr=bars[drawn], fmt="none", ecolor="black", capsize=3)
    if "baseline" in set(order.method):
        axes.axhline(order.set_index("method").top1_mean["baseline"], color="black", linestyle="--", linewidth=1)
    axes.set_xticks(positions, order.method, rotation=60, ha="right")
    axes.set_ylabel("top-1 accuracy (%)")
    reach = bars.fillna(0.0)
    axes.set_ylim(max(0.0, (order.top1_mean - reach).min() - 5), min(100.0, (order.top1_mean + reach).max() + 2))
    handles = [plt.Rectangle((0, 0), 1, 1, color=COLOURS[k]) for k in KINDS if k in set(order.kind)]
    axes.legend(handles, [k for k in KINDS if k in set(order.kind)], title="kind", loc="lower right")
    axes.set_title(f"Top-1 per method (mean; {_spread_note(bars)}; dashed: baseline)")
    _save(figure, out)


def _plot_top1_against(summary: pd.DataFrame, x: pd.Series, axes) -> None:
    """A point per method at (x, mean top-1), with its error bar where it has one."""
    for position, bar, row in zip(x, error_bars(summary), summary.itertuples()):
        yerr = None if np.isnan(bar) else bar
        axes.errorbar(position, row.top1_mean, yerr=yerr, fmt="o", color=COLOURS.get(row.kind, "grey"), capsize=3)
        axes.annotate(row.method, (position, row.top1_mean), fontsize=7, xytext=(3, 3), textcoords="offset points")
    axes.set_ylabel("top-1 accuracy (%)")


def plot_top1_vs_cost(summary: pd.DataFrame, out: Path) -> None:
    figure, axes = plt.subplots(figsize=(6, 4))
    hours = summary.gpu_hours.fillna(0.0) if "gpu_hours" in summary else pd.Series(0.0, index=summary.index)
    _plot_top1_against(summary, hours, axes)
    axes.set_xlabel("GPU hours of the method's own jobs")
    axes.set_title(f"Accuracy against compute ({_spread_note(error_bars(summary))})")
    _save(figure, out)


def plot_top1_vs_added(summary: pd.DataFrame, out: Path) -> None:
    """Top-1 against images added per class; a sweep (entries that differ in per_class) spreads along x."""
    figure, axes = plt.subplots(figsize=(6, 4))
    _plot_top1_against(summary, summary.n_added_per_class, axes)
    axes.set_xlabel("images added per class")
    axes.set_title(f"Accuracy against the amount added ({_spread_note(error_bars(summary))})")
    _save(figure, out)


def plot_gain_vs_diagnostics(summary: pd.DataFrame, diagnostics: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Per diagnostic of diagnostics.csv, ``<diagnostic>.png``: each method's Δ top-1 over the baseline
    (with its paired 95% interval where it has one) against the diagnostic, coloured by kind,
    titled with Spearman's rank correlation (``augbench.gain_correlation``)."""
    correlation = gain_correlation(summary, diagnostics).set_index("diagnostic")
    rows = summary.merge(diagnostics, on="method", how="inner")
    written = []
    for column in diagnostic_columns(diagnostics):
        points = rows[rows[column].notna() & rows.vs_baseline.notna()]
        figure, axes = plt.subplots(figsize=(6, 4))
        for row in points.itertuples():
            low, high = row.vs_baseline_ci_low, row.vs_baseline_ci_high
            yerr = None if np.isnan(low) else [[row.vs_baseline - low], [high - row.vs_baseline]]
            value = getattr(row, column)
            axes.errorbar(value, row.vs_baseline, yerr=yerr, fmt="o", color=COLOURS.get(row.kind, "grey"), capsize=3)
            axes.annotate(row.method, (value, row.vs_baseline), fontsize=7, xytext=(3, 3), textcoords="offset points")
        axes.axhline(0.0, color="black", linestyle="--", linewidth=1)
        handles = [
            plt.Line2D([], [], marker="o", linestyle="", color=COLOURS[k]) for k in KINDS if k in set(points.kind)
        ]
        if handles:
            axes.legend(handles, [k for k in KINDS if k in set(points.kind)], title="kind", fontsize=7)
        axes.set_xlabel(column)
        axes.set_ylabel("Δ top-1 over baseline (points)")
        rho, n = correlation.loc[column, "spearman_rho"], int(correlation.loc[column, "n_methods"])
        axes.set_title(f"Gain against {column}: Spearman ρ {'n/a' if np.isnan(rho) else f'{rho:+.2f}'}, {n} methods")
        path = out_dir / f"{column}.png"
        _save(figure, path)
        written.append(path)
    return written


def plot_grid(rows: dict[str, list[str]], title: str, out: Path, size: int = 64, gap: int = 6) -> None:
    """A grid: one row per entry (its label, then its images), blank where a row has fewer.

    The images are laid into one array and drawn as one image: with an axes per image, the
    demo's figure job (three grids of 117) took 8.2 to 8.5 s against 5.4 to 5.7 s, at the end
    of the run where nothing else runs beside it."""
    columns = max(1, max(len(paths) for paths in rows.values()))
    step = size + gap
    mosaic = np.full((len(rows) * step - gap, columns * step - gap, 3), 255, dtype=np.uint8)
    for r, paths in enumerate(rows.values()):
        for c, path in enumerate(paths):
            try:
                mosaic[r * step : r * step + size, c * step : c * step + size] = load_rgb(path).resize((size, size))
            except UnreadableImage:
                pass
    figure, ax = plt.subplots(figsize=(1.1 * columns + 1.6, 1.1 * len(rows)))
    ax.imshow(mosaic)
    ax.set_xticks([])
    ax.set_yticks([r * step + (size - 1) / 2 for r in range(len(rows))], list(rows), fontsize=8)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(title, fontsize=10)
    _save(figure, out)


def grid_rows(subset: pd.DataFrame, added: dict[str, pd.DataFrame], label: int, count: int) -> dict[str, list[str]]:
    rows = {"real": subset[subset.label == label].path.tolist()[:count]}
    for method, frame in added.items():
        rows[method] = frame[frame.label == label].path.tolist()[:count]
    return rows


def grid_labels(n_classes: int, chosen: int) -> list[int]:
    """``chosen`` classes spread evenly over the class list (the same ones on every run)."""
    return sorted({int(i) for i in np.linspace(0, n_classes - 1, min(chosen, n_classes))})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--summary", required=True)
    parser.add_argument("--classes", required=True)
    parser.add_argument("--subset", required=True, help="the real subset, shown first in each grid")
    parser.add_argument("--added", nargs="*", default=[], metavar="METHOD=MANIFEST")
    parser.add_argument("--grid-classes", type=int, default=3, help="classes shown as image grids")
    parser.add_argument("--grid-images", type=int, default=8, help="images per row of a grid")
    parser.add_argument(
        "--diagnostics", help="diagnostics.csv: a figure per diagnostic, Δ top-1 against it, in gain_vs_diagnostics/"
    )
    parser.add_argument("--out-dir", required=True)
    args = parser.parse_args(argv)
    start_logging()
    out = Path(args.out_dir)
    summary = pd.read_csv(args.summary)
    plot_top1(summary, out / "top1.png")
    plot_top1_vs_cost(summary, out / "top1_vs_cost.png")
    plot_top1_vs_added(summary, out / "top1_vs_added.png")
    if args.diagnostics:
        plot_gain_vs_diagnostics(summary, pd.read_csv(args.diagnostics), out / "gain_vs_diagnostics")
    classes = read_classes(args.classes)
    subset = read_manifest(args.subset)
    added = {method: read_manifest(path) for method, path in (item.split("=", 1) for item in args.added)}
    for label in grid_labels(len(classes), args.grid_classes):
        rows = grid_rows(subset, added, label, args.grid_images)
        name = "".join(ch if ch.isalnum() else "_" for ch in classes[label])
        plot_grid(rows, f"class {label}: {classes[label]}", out / "grids" / f"class{label:04d}_{name}.png")
    log.info("wrote figures to %s", out)


if __name__ == "__main__":
    run(main)
