import pytest
from PIL import Image

from augbench import dataset
from augbench.files import read_class_folders, read_classes, read_manifest


def _tree(root, folders):
    for folder, files in folders.items():
        (root / folder).mkdir(parents=True)
        for name in files:
            Image.new("RGB", (4, 4)).save(root / folder / name)


def test_a_class_per_folder_tree_is_listed_in_class_list_order(tmp_path):
    _tree(tmp_path / "train", {"n02": ["b.JPEG", "a.JPEG"], "n01": ["c.png"], "n99": ["d.png"]})
    (tmp_path / "train" / "n01" / "notes.txt").write_text("not an image file")
    (tmp_path / "classes.tsv").write_text("n02\tgoldfish\nn01\ttench\n")
    assert read_classes(tmp_path / "classes.tsv") == ["goldfish", "tench"]
    assert read_class_folders(tmp_path / "classes.tsv") == ["n02", "n01"]
    classes, out = str(tmp_path / "classes.tsv"), str(tmp_path / "m.csv")
    dataset.main(["--root", str(tmp_path / "train"), "--classes", classes, "--out", out])
    frame = read_manifest(tmp_path / "m.csv")
    names = [path.split("train/")[1] for path in frame.path]
    # Sorted files, labelled by the class list; the folder the list does not name is left out.
    assert names == ["n02/a.JPEG", "n02/b.JPEG", "n01/c.png"]
    assert frame.label.tolist() == [0, 0, 1]


def test_a_class_list_of_plain_names_names_the_folders_too(tmp_path):
    (tmp_path / "classes.txt").write_text("cat\ndog\n")
    assert read_class_folders(tmp_path / "classes.txt") == read_classes(tmp_path / "classes.txt") == ["cat", "dog"]


def test_missing_or_empty_class_folders_are_named(tmp_path):
    _tree(tmp_path / "train", {"cat": ["a.png"], "dog": []})
    with pytest.raises(ValueError, match="no folder for class.*bird"):
        dataset.list_tree(str(tmp_path / "train"), ["cat", "bird"])
    with pytest.raises(ValueError, match="dog.*holds no images"):
        dataset.list_tree(str(tmp_path / "train"), ["cat", "dog"])
    with pytest.raises(ValueError, match="does not exist"):
        dataset.list_tree(str(tmp_path / "nowhere"), ["cat"])


def test_the_shipped_imagenet_class_list_has_1000_distinct_classes():
    from pathlib import Path

    classes = Path(__file__).resolve().parents[1] / "resources" / "imagenet" / "classes.tsv"
    folders, names = read_class_folders(classes), read_classes(classes)
    assert len(folders) == len(names) == 1000
    assert folders == sorted(folders) and all(folder.startswith("n") for folder in folders)
    assert (folders[0], names[0]) == ("n01440764", "tench")


def test_the_shipped_caltech256_class_list_names_256_folders_and_not_clutter():
    import re
    from pathlib import Path

    classes = Path(__file__).resolve().parents[1] / "resources" / "caltech256" / "classes.tsv"
    folders, names = read_class_folders(classes), read_classes(classes)
    assert [int(folder[:3]) for folder in folders] == list(range(1, 257))  # 001.ak47 ... 256.toad
    assert "257.clutter" not in folders and len(set(names)) == 256
    # Each name is its folder's, without the number, the Caltech-101 mark and hyphens.
    assert names == [re.sub(r"-101$", "", folder[4:]).replace("-", " ") for folder in folders]
    assert (folders[62], names[62]) == ("063.electric-guitar-101", "electric guitar")


def _dtd(root, splits: dict[str, list[str]]) -> None:
    """DTD as torchvision reads it: <root>/dtd/dtd/images/<class>/<file> and labels/<split>1.txt."""
    data = root / "dtd" / "dtd"
    for split, entries in splits.items():
        for entry in entries:
            (data / "images" / entry).parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (4, 4)).save(data / "images" / entry)
        (data / "labels").mkdir(parents=True, exist_ok=True)
        (data / "labels" / f"{split}1.txt").write_text("".join(f"{entry}\n" for entry in entries))


def test_an_official_split_is_listed_through_torchvisions_class(tmp_path):
    _dtd(tmp_path, {"train": ["zigzagged/z1.jpg", "banded/b1.jpg"], "val": ["banded/b2.jpg"], "test": ["woven/w.jpg"]})
    # The class list orders the classes its own way and leaves "woven" out.
    (tmp_path / "classes.tsv").write_text("zigzagged\tzigzag\nbanded\n")
    out = tmp_path / "train.csv"
    dataset.main(
        [
            "--root",
            str(tmp_path),
            "--torchvision",
            "DTD",
            "--split",
            "train",
            "--split",
            "val",
            "--option",
            "partition=1",
        ]
        + ["--classes", str(tmp_path / "classes.tsv"), "--out", str(out)]
    )
    frame = read_manifest(out)
    assert [path.split("images/")[1] for path in frame.path] == ["zigzagged/z1.jpg", "banded/b1.jpg", "banded/b2.jpg"]
    assert frame.label.tolist() == [0, 1, 1]
    (tmp_path / "typo.tsv").write_text("zigzaged\nbanded\n")
    with pytest.raises(ValueError, match="has no class 'zigzaged'"):
        dataset.list_torchvision("DTD", str(tmp_path), ["train"], read_class_folders(tmp_path / "typo.tsv"))
    with pytest.raises(ValueError, match="is not under .*fetch it first"):
        dataset.list_torchvision("DTD", str(tmp_path / "nowhere"), ["train"], ["banded"])
    with pytest.raises(ValueError, match="no dataset class 'Textures'"):
        dataset.list_torchvision("Textures", str(tmp_path), ["train"], ["banded"])


def test_a_dataset_without_class_names_is_labelled_by_position(tmp_path, monkeypatch):
    import torchvision.datasets

    class Unnamed:  # as Flowers102: image files and 0-based labels, no class names
        def __init__(self, root, split, download):
            self._image_files = [f"{root}/{split}/{i}.jpg" for i in range(3)]
            self._labels = [2, 0, 1] if split == "test" else [5]

    monkeypatch.setattr(torchvision.datasets, "Unnamed", Unnamed, raising=False)
    frame = dataset.list_torchvision("Unnamed", "data", ["test"], ["a", "b", "c"])
    assert frame.path.tolist() == ["data/test/0.jpg", "data/test/1.jpg", "data/test/2.jpg"]
    assert frame.label.tolist() == [2, 0, 1]
    with pytest.raises(ValueError, match="labels up to 5, but the class list has 3 lines"):
        dataset.list_torchvision("Unnamed", "data", ["train"], ["a", "b", "c"])
