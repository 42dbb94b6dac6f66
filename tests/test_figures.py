import pandas as pd
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
            "top1_mean": [60.0, 65.0, 62.0],
            "top1_std": [1.0, 0.5, 0.0],
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
