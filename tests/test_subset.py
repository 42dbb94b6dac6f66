from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from augbench.quotas import class_quotas
from augbench.subset import draw_subset


@pytest.fixture(autouse=True)
def _image_folder(tmp_path, monkeypatch):
    """The draw decodes what it draws, so the manifests point at real (tiny) images."""
    monkeypatch.chdir(tmp_path)


def _frame(per_class=10, n_classes=3):
    paths = [f"img_{c}_{i}.png" for c in range(n_classes) for i in range(per_class)]
    for path in paths:
        if not Path(path).exists():
            Image.new("RGB", (4, 4), (10, 20, 30)).save(path)
    return pd.DataFrame({"path": paths, "label": [c for c in range(n_classes) for _ in range(per_class)]})


def test_per_class_draw_is_stratified_and_leaves_the_rest():
    subset, rest, unreadable = draw_subset(_frame(), 3, seed=0, per_class=4)
    assert subset.label.value_counts().to_dict() == {0: 4, 1: 4, 2: 4}
    assert set(subset.path).isdisjoint(rest.path)
    assert len(subset) + len(rest) == 30
    assert unreadable.empty


def test_fraction_draw_rounds_per_class_and_keeps_one_at_least():
    subset, _, _ = draw_subset(_frame(per_class=10), 3, seed=0, fraction=0.25)
    assert subset.label.value_counts().to_dict() == {0: 2, 1: 2, 2: 2}
    subset, _, _ = draw_subset(_frame(per_class=10), 3, seed=0, fraction=0.01)
    assert subset.label.value_counts().to_dict() == {0: 1, 1: 1, 2: 1}


def test_draw_is_seeded_and_independent_of_row_order():
    frame = _frame()
    a, _, _ = draw_subset(frame, 3, seed=5, per_class=3)
    b, _, _ = draw_subset(frame.sample(frac=1, random_state=1), 3, seed=5, per_class=3)
    c, _, _ = draw_subset(frame, 3, seed=6, per_class=3)
    assert a.path.tolist() == b.path.tolist()
    assert a.path.tolist() != c.path.tolist()


def test_draw_names_the_class_that_is_too_small():
    frame = _frame(per_class=5)
    with pytest.raises(ValueError, match="class 0 has 5 training images, fewer than the 6"):
        draw_subset(frame, 3, seed=0, per_class=6)
    with pytest.raises(ValueError, match="exactly one"):
        draw_subset(frame, 3, seed=0, per_class=2, fraction=0.5)


def test_an_unreadable_drawn_image_is_replaced_by_another_of_its_class_and_listed():
    frame = _frame(per_class=6)
    broken = ["img_1_0.png", "img_1_1.png", "img_1_2.png", "img_1_3.png"]
    Path(broken[0]).write_bytes(b"")  # zero bytes
    Path(broken[1]).write_text("not an image")
    Image.new("RGB", (64, 64)).save("full.jpg")
    Path(broken[2]).write_bytes(Path("full.jpg").read_bytes()[:200])  # truncated JPEG
    Image.new("CMYK", (4, 4)).save(broken[3], format="TIFF")  # CMYK converts: it is readable
    subset, rest, unreadable = draw_subset(frame, 3, seed=0, per_class=3)
    assert subset.label.value_counts().to_dict() == {0: 3, 1: 3, 2: 3}
    assert set(subset.path).isdisjoint(broken[:3]) and set(rest.path).isdisjoint(broken[:3])
    # Every unreadable image of class 1 had to be tried: 3 readable ones among 6 are needed.
    assert sorted(unreadable.path) == sorted(broken[:3])
    assert (unreadable.label == 1).all() and unreadable.reason.str.contains("cannot be read").all()
    assert broken[3] in set(subset.path)
    # The replacement is seeded, like the draw itself.
    again, _, _ = draw_subset(frame, 3, seed=0, per_class=3)
    assert again.path.tolist() == subset.path.tolist()


def test_a_class_without_enough_readable_images_is_named():
    frame = _frame(per_class=3)
    Path("img_2_0.png").write_bytes(b"")
    with pytest.raises(ValueError, match=r"class 2 \(bird\) has 2 readable training images, fewer than the 3"):
        draw_subset(frame, 3, seed=0, per_class=3, names=["cat", "dog", "bird"])


def test_quotas_default_to_one_added_image_per_real_image():
    subset = pd.DataFrame({"path": list("abcde"), "label": [0, 0, 1, 2, 2]})
    assert class_quotas(subset, 4) == [2, 1, 2, 0]
    assert class_quotas(subset, 4, per_class=3) == [3, 3, 3, 3]
    with pytest.raises(ValueError, match="per_class"):
        class_quotas(subset, 4, per_class=-1)


def test_extra_real_images_come_from_outside_the_subset(tmp_path):
    from augbench import subset as module
    from augbench.files import write_classes, write_manifest

    write_manifest(tmp_path / "train.csv", _frame(per_class=10))
    write_classes(tmp_path / "classes.txt", ["a", "b", "c"])
    common = ["--classes", str(tmp_path / "classes.txt"), "--seed", "0"]
    module.main(
        [
            "--manifest",
            str(tmp_path / "train.csv"),
            "--per-class",
            "3",
            *common,
            "--out",
            str(tmp_path / "subset.csv"),
            "--rest",
            str(tmp_path / "rest.csv"),
        ]
    )
    module.main(
        [
            "--manifest",
            str(tmp_path / "rest.csv"),
            "--like",
            str(tmp_path / "subset.csv"),
            "--times",
            "2",
            *common,
            "--out",
            str(tmp_path / "extra.csv"),
        ]
    )
    subset, extra = pd.read_csv(tmp_path / "subset.csv"), pd.read_csv(tmp_path / "extra.csv")
    assert extra.label.value_counts().to_dict() == {0: 6, 1: 6, 2: 6}
    assert set(extra.path).isdisjoint(subset.path)


def _tree_frame(names_per_class: dict[str, list[str]]) -> pd.DataFrame:
    """A training manifest of a class-per-folder tree (data/train/<class>/<file>), with real images."""
    rows = []
    for label, (folder, names) in enumerate(names_per_class.items()):
        Path("data/train", folder).mkdir(parents=True, exist_ok=True)
        for name in names:
            path = f"data/train/{folder}/{name}"
            Image.new("RGB", (4, 4), (label, 0, 0)).save(path, format="PNG")
            rows.append((path, label))
    return pd.DataFrame(rows, columns=["path", "label"])


def _write_list(lines: list[str]) -> str:
    Path("list.txt").write_text("\n".join(lines) + "\n")
    return "list.txt"


def test_a_file_list_makes_the_subset_exactly_the_listed_training_images():
    from augbench.subset import pick_listed, read_file_list

    frame = _tree_frame({"n01": ["n01_1.JPEG", "n01_2.JPEG", "n01_3.JPEG"], "n02": ["n02_1.JPEG", "n02_2.JPEG"]})
    # By file name, as the published 10% ImageNet list does, or by path below the tree; blank lines are skipped.
    entries = read_file_list(_write_list(["n02_2.JPEG", "", "n01/n01_3.JPEG", "n01_1.JPEG"]))
    subset, rest, unreadable = pick_listed(frame.sample(frac=1, random_state=0), entries, 2)
    assert sorted(subset.path) == [
        "data/train/n01/n01_1.JPEG",
        "data/train/n01/n01_3.JPEG",
        "data/train/n02/n02_2.JPEG",
    ]
    assert subset.label.tolist() == [0, 0, 1]
    assert sorted(rest.path) == ["data/train/n01/n01_2.JPEG", "data/train/n02/n02_1.JPEG"]
    assert unreadable.empty


def test_a_file_list_naming_files_outside_the_training_set_twice_or_ambiguously_is_refused():
    from augbench.subset import pick_listed, read_file_list

    frame = _tree_frame({"cat": ["a.png", "b.png", "same.png"], "dog": ["c.png", "same.png"]})
    with pytest.raises(ValueError, match=r"2 listed file\(s\) are not in the training set: nowhere.png, dog/a.png"):
        pick_listed(frame, ["a.png", "nowhere.png", "dog/a.png", "c.png"], 2)
    with pytest.raises(ValueError, match="lists a.png more than once"):
        read_file_list(_write_list(["a.png", "c.png", "a.png"]))
    with pytest.raises(ValueError, match="same.png names 2 training images"):
        pick_listed(frame, ["same.png", "c.png"], 2)
    subset, _, _ = pick_listed(frame, ["cat/same.png", "dog/same.png"], 2)  # paths tell them apart
    assert len(subset) == 2
    with pytest.raises(ValueError, match="two entries name the same training image data/train/cat/a.png"):
        pick_listed(frame, ["a.png", "cat/a.png", "c.png"], 2)
    with pytest.raises(ValueError, match=r"no listed file of class\(es\) 1 \(dog\)"):
        pick_listed(frame, ["a.png"], 2, names=["cat", "dog"])


def test_an_unreadable_listed_file_stops_the_draw_naming_it():
    from augbench.subset import pick_listed

    frame = _tree_frame({"cat": ["a.png", "b.png"], "dog": ["c.png", "d.png"]})
    Path("data/train/dog/c.png").write_bytes(b"")
    with pytest.raises(ValueError, match=r"1 listed file\(s\) cannot be read: data/train/dog/c.png"):
        pick_listed(frame, ["a.png", "c.png"], 2)


def test_the_subset_command_takes_a_file_list():
    from augbench import subset as module
    from augbench.files import write_classes, write_manifest

    write_manifest("train.csv", _tree_frame({"cat": ["a.png", "b.png"], "dog": ["c.png", "d.png"]}))
    write_classes("classes.txt", ["cat", "dog"])
    module.main(
        ["--manifest", "train.csv", "--classes", "classes.txt", "--file-list", _write_list(["b.png", "dog/c.png"])]
        + ["--out", "subset.csv", "--rest", "rest.csv", "--unreadable", "unreadable.csv"]
    )
    assert pd.read_csv("subset.csv").path.tolist() == ["data/train/cat/b.png", "data/train/dog/c.png"]
    assert pd.read_csv("rest.csv").path.tolist() == ["data/train/cat/a.png", "data/train/dog/d.png"]
