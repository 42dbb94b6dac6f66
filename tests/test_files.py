import pandas as pd
import pytest

from augbench.files import atomic_path, read_classes, read_manifest, write_classes, write_manifest


def test_atomic_path_leaves_nothing_when_the_writer_fails(tmp_path):
    target = tmp_path / "out.csv"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_replaces_the_target_on_success(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_manifest_round_trip_and_required_columns(tmp_path):
    frame = pd.DataFrame({"path": ["a.png", "b.png"], "label": [1, 0], "caption": ["x", ""]})
    write_manifest(tmp_path / "m.csv", frame)
    back = read_manifest(tmp_path / "m.csv")
    assert back.path.tolist() == ["a.png", "b.png"]
    assert back.label.tolist() == [1, 0]
    assert back.caption.tolist() == ["x", ""]
    with pytest.raises(ValueError, match="'label'"):
        write_manifest(tmp_path / "bad.csv", frame.drop(columns="label"))


def test_class_list_rejects_repeats_and_empties(tmp_path):
    write_classes(tmp_path / "c.txt", ["cat", "dog"])
    assert read_classes(tmp_path / "c.txt") == ["cat", "dog"]
    (tmp_path / "dup.txt").write_text("cat\ncat\n")
    with pytest.raises(ValueError, match="repeats"):
        read_classes(tmp_path / "dup.txt")
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(ValueError, match="empty"):
        read_classes(tmp_path / "empty.txt")


def test_images_of_every_mode_load_as_8_bit_rgb(tmp_path):
    import numpy as np
    from PIL import Image

    from augbench.images import MAX_SIDE, UnreadableImage, load_rgb

    grey16 = Image.fromarray((np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16))
    palette = Image.new("P", (8, 8), 0)
    palette.putpalette([255, 0, 0] * 256)
    palette.info["transparency"] = 0  # every pixel transparent: seen as the white page
    samples = {
        "cmyk.jpg": Image.new("CMYK", (8, 8), (0, 255, 255, 0)),
        "grey16.png": grey16,
        "grey.png": Image.new("L", (8, 8), 128),
        "palette.png": palette,
        "rgba.png": Image.new("RGBA", (8, 8), (0, 0, 255, 255)),
    }
    for name, image in samples.items():
        image.save(tmp_path / name)
        loaded = load_rgb(str(tmp_path / name))
        assert loaded.mode == "RGB" and loaded.size == image.size, name
    assert load_rgb(str(tmp_path / "palette.png")).getpixel((0, 0)) == (255, 255, 255)
    assert load_rgb(str(tmp_path / "rgba.png")).getpixel((0, 0)) == (0, 0, 255)
    assert np.asarray(load_rgb(str(tmp_path / "grey16.png"))).max() == 255  # the 16-bit range, scaled
    # A 20,000 px wide image is shrunk as it is read.
    Image.new("RGB", (20000, 10), (1, 2, 3)).save(tmp_path / "wide.png")
    assert max(load_rgb(str(tmp_path / "wide.png")).size) == MAX_SIDE
    # What cannot be decoded is named.
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.png").write_text("not an image")
    Image.new("RGB", (64, 64), (9, 9, 9)).save(tmp_path / "full.jpg")
    (tmp_path / "cut.jpg").write_bytes((tmp_path / "full.jpg").read_bytes()[:200])
    for name in ("empty.jpg", "text.png", "cut.jpg"):
        with pytest.raises(UnreadableImage, match=name):
            load_rgb(str(tmp_path / name))
