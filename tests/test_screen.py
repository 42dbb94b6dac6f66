import pandas as pd
from PIL import Image

from augbench import screen
from augbench.files import read_manifest, write_manifest


def test_screen_keeps_convertible_images_and_lists_the_unreadable_with_reasons(tmp_path):
    Image.new("CMYK", (8, 8)).save(tmp_path / "cmyk.jpg")
    Image.new("I;16", (8, 8)).save(tmp_path / "grey16.png")
    Image.new("RGB", (20000, 4)).save(tmp_path / "wide.png")
    (tmp_path / "empty.jpg").write_bytes(b"")
    Image.new("RGB", (64, 64)).save(tmp_path / "full.jpg")
    (tmp_path / "cut.jpg").write_bytes((tmp_path / "full.jpg").read_bytes()[:150])
    names = ["cmyk.jpg", "empty.jpg", "grey16.png", "cut.jpg", "wide.png", "missing.png"]
    frame = pd.DataFrame({"path": [str(tmp_path / name) for name in names], "label": range(6)})
    write_manifest(tmp_path / "val.csv", frame)
    screen.main(
        [
            "--manifest", str(tmp_path / "val.csv"),
            "--out", str(tmp_path / "readable.csv"),
            "--unreadable", str(tmp_path / "unreadable.csv"),
            "--threads", "2",
        ]
    )  # fmt: skip
    readable, unreadable = read_manifest(tmp_path / "readable.csv"), read_manifest(tmp_path / "unreadable.csv")
    assert readable.label.tolist() == [0, 2, 4]  # in manifest order
    assert unreadable.label.tolist() == [1, 3, 5]
    for row in unreadable.itertuples():
        assert row.path in row.reason and "cannot be read" in row.reason
