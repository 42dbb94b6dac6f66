import numpy as np
import pandas as pd
import pytest
from matplotlib.container import ErrorbarContainer
from PIL import Image

from augbench import figures
from augbench.files import write_manifest


def _images(folder, count, colour):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"{i}.png"
        Image.new("RGB", (16, 16), colour).save(path)
        paths.append(str(path))
    return paths


def test_figures_and_one_grid_per_chosen_class(tmp_path):
    summary = pd.DataFrame(
        {
            "method": ["baseline", "retrieve_text", "gen_classname"],
            "kind": ["real", "retrieve", "generate"],
            "n_seeds": [3, 3, 1],
            "top1_mean": [60.0, 65.0, 62.0],
            "top1_std": [1.0, 0.5, np.nan],
            "gpu_hours": [0.1, 0.2, 3.0],
            "n_added_per_class": [0.0, 2.0, 2.0],
        }
    )
    summary.to_csv(tmp_path / "summary.csv", index=False)
    (tmp_path / "classes.txt").write_text("ant\nbee\ncat\ndog\nelk\n")
    real = _images(tmp_path / "real", 10, (200, 0, 0))
    write_manifest(tmp_path / "subset.csv", pd.DataFrame({"path": real, "label": [0, 1, 2, 3, 4] * 2}))
    added = _images(tmp_path / "added", 10, (0, 0, 200))
    write_manifest(tmp_path / "added.csv", pd.DataFrame({"path": added, "label": [0, 1, 2, 3, 4] * 2}))
    figures.main(
        ["--summary", str(tmp_path / "summary.csv"), "--classes", str(tmp_path / "classes.txt")]
        + ["--subset", str(tmp_path / "subset.csv"), "--added", f"gen_classname={tmp_path / 'added.csv'}"]
        + ["--grid-classes", "3", "--out-dir", str(tmp_path / "figures")]
    )
    grids = sorted(path.name for path in (tmp_path / "figures" / "grids").glob("*.png"))
    assert grids == ["class0000_ant.png", "class0002_cat.png", "class0004_elk.png"]  # spread over the list
    for path in [tmp_path / "figures" / name for name in ("top1.png", "top1_vs_cost.png", "top1_vs_added.png")]:
        with Image.open(path) as image:
            assert image.format == "PNG" and min(image.size) > 100
    with Image.open(tmp_path / "figures" / "grids" / "class0002_cat.png") as grid:
        colours = {colour for _, colour in grid.convert("RGB").getcolors(1 << 20)}
    # The real (red) and the added (blue) images are drawn in the grid.
    assert any(r > 150 and g < 60 and b < 60 for r, g, b in colours)
    assert any(b > 150 and r < 60 and g < 60 for r, g, b in colours)


def _summary(n_seeds, std):
    return pd.DataFrame(
        {
            "method": ["baseline", "retrieve_text", "gen_classname"],
            "kind": ["real", "retrieve", "generate"],
            "n_seeds": n_seeds,
            "top1_mean": [60.0, 65.0, 62.0],
            "top1_std": std,
            "gpu_hours": [0.1, 0.2, 3.0],
            "n_added_per_class": [0.0, 2.0, 2.0],
        }
    )


def test_error_bars_are_the_std_the_table_prints_and_none_for_one_seed():
    bars = figures.error_bars(_summary([3, 2, 1], [1.5, 0.5, np.nan]))
    assert bars.tolist()[:2] == [1.5, 0.5] and np.isnan(bars.iloc[2])
    # A summary.csv written before one-seed stds were left empty says 0.0: still no bar.
    assert figures.error_bars(_summary([1, 1, 1], [0.0, 0.0, 0.0])).isna().all()


def _drawn_error_bars(plot, summary, monkeypatch, tmp_path):
    """The error bars a plot function draws: (x, mean, half-height) of each."""
    drawn = []

    def keep(figure, path):
        for container in figure.axes[0].containers:
            if isinstance(container, ErrorbarContainer) and container.has_yerr:
                for segments in container.lines[2]:
                    # A NaN height leaves an empty segment: nothing drawn.
                    for (x, low), (_, high) in (segment for segment in segments.get_segments() if len(segment)):
                        drawn.append((x, (low + high) / 2, (high - low) / 2))

    monkeypatch.setattr(figures, "_save", keep)
    plot(summary, tmp_path / "figure.png")
    return sorted(drawn)


@pytest.mark.parametrize("plot", [figures.plot_top1, figures.plot_top1_vs_cost, figures.plot_top1_vs_added])
def test_figures_draw_error_bars_only_for_methods_with_several_seeds(plot, monkeypatch, tmp_path):
    for one_seed_std in ([np.nan] * 3, [0.0] * 3):  # as written now, and by aggregate before 0.0 meant "one seed"
        assert _drawn_error_bars(plot, _summary([1, 1, 1], one_seed_std), monkeypatch, tmp_path) == []
    mixed = _summary([3, 3, 1], [1.5, 0.5, np.nan])
    bars = _drawn_error_bars(plot, mixed, monkeypatch, tmp_path)
    means_and_halves = sorted((mean, half) for _, mean, half in bars)
    np.testing.assert_allclose(means_and_halves, [(60.0, 1.5), (65.0, 0.5)])


def test_a_figure_per_diagnostic_of_the_gain_against_it(tmp_path):
    summary = pd.DataFrame(
        {
            "method": ["baseline", "retr", "gen"],
            "kind": ["real", "retrieve", "generate"],
            "vs_baseline": [np.nan, 2.0, -1.0],
            "vs_baseline_ci_low": [np.nan, 1.0, np.nan],
            "vs_baseline_ci_high": [np.nan, 3.0, np.nan],
        }
    )
    diagnostics = pd.DataFrame(
        {"method": ["retr", "gen"], "n_added": [4, 4], "vendi": [2.0, 1.5], "recall": [0.4, 0.1]}
    )
    written = figures.plot_gain_vs_diagnostics(summary, diagnostics, tmp_path / "gain")
    assert sorted(path.name for path in written) == ["recall.png", "vendi.png"]
    assert all(Image.open(path).size[0] > 100 for path in written)
