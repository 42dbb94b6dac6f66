import yaml

from augbench.stub import make_stub


def test_stub_makes_missing_data_paths_and_leaves_existing_ones(tmp_path):
    config = {
        "dataset": {"classes": "classes.tsv", "train": "data/train", "val": "data/val.csv"},
        "pool": {"manifest": "data/pool/manifest.csv"},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    (tmp_path / "data" / "pool").mkdir(parents=True)
    (tmp_path / "data" / "pool" / "manifest.csv").write_text("path,label,caption\nreal.jpg,-1,a cat\n")
    made = make_stub(str(tmp_path / "c.yaml"), str(tmp_path))
    assert sorted(path.relative_to(tmp_path).as_posix() for path in made) == ["data/train", "data/val.csv"]
    assert (tmp_path / "data" / "train").is_dir() and (tmp_path / "data" / "val.csv").is_file()
    assert "a cat" in (tmp_path / "data" / "pool" / "manifest.csv").read_text()  # real data untouched
    assert make_stub(str(tmp_path / "c.yaml"), str(tmp_path)) == []


def test_stub_makes_the_files_a_config_names_beside_the_data(tmp_path):
    """A subset's file list, starting weights and a threshold file are files a dry run checks."""
    config = {
        "dataset": {"train": "data/train", "val": "data/val"},
        "pool": {"manifest": "pool/*.tar"},
        "subset": {"file_list": "lists/10percent.txt"},
        "classifier": {"init_weights": "weights/resnet50.pth"},
        "methods": {
            "baseline": {"kind": "real"},
            "retrieve_text": {"kind": "retrieve", "min_clip_score_file": "t.tsv"},
        },
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    made = {path.relative_to(tmp_path).as_posix() for path in make_stub(str(tmp_path / "c.yaml"), str(tmp_path))}
    assert made == {"data/train", "data/val", "pool/stub.tar", "lists/10percent.txt", "weights/resnet50.pth", "t.tsv"}
    assert (tmp_path / "data" / "train").is_dir()
    for path in ("pool/stub.tar", "lists/10percent.txt", "weights/resnet50.pth", "t.tsv"):
        assert (tmp_path / path).is_file(), path
