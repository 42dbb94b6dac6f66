import pandas as pd
import pytest

from augbench.subset import class_quotas, draw_subset


def _frame(per_class=10, n_classes=3):
    return pd.DataFrame(
        {
            "path": [f"img_{c}_{i}.png" for c in range(n_classes) for i in range(per_class)],
            "label": [c for c in range(n_classes) for _ in range(per_class)],
        }
    )


def test_per_class_draw_is_stratified_and_leaves_the_rest():
    subset, rest = draw_subset(_frame(), 3, seed=0, per_class=4)
    assert subset.label.value_counts().to_dict() == {0: 4, 1: 4, 2: 4}
    assert set(subset.path).isdisjoint(rest.path)
    assert len(subset) + len(rest) == 30


def test_fraction_draw_rounds_per_class_and_keeps_one_at_least():
    subset, _ = draw_subset(_frame(per_class=10), 3, seed=0, fraction=0.25)
    assert subset.label.value_counts().to_dict() == {0: 2, 1: 2, 2: 2}
    subset, _ = draw_subset(_frame(per_class=10), 3, seed=0, fraction=0.01)
    assert subset.label.value_counts().to_dict() == {0: 1, 1: 1, 2: 1}


def test_draw_is_seeded_and_independent_of_row_order():
    frame = _frame()
    a, _ = draw_subset(frame, 3, seed=5, per_class=3)
    b, _ = draw_subset(frame.sample(frac=1, random_state=1), 3, seed=5, per_class=3)
    c, _ = draw_subset(frame, 3, seed=6, per_class=3)
    assert a.path.tolist() == b.path.tolist()
    assert a.path.tolist() != c.path.tolist()


def test_draw_names_the_class_that_is_too_small():
    frame = _frame(per_class=5)
    with pytest.raises(ValueError, match="class 0 has 5 training images, fewer than the 6"):
        draw_subset(frame, 3, seed=0, per_class=6)
    with pytest.raises(ValueError, match="exactly one"):
        draw_subset(frame, 3, seed=0, per_class=2, fraction=0.5)


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
