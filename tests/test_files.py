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
