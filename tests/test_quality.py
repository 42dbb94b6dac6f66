import numpy as np
import pandas as pd
import pytest

from augbench import collect, quality
from augbench.files import write_manifest


@pytest.fixture
def classes(tmp_path):
    path = tmp_path / "classes.tsv"
    path.write_text("n01\ttench\nn02\tgoldfish\nn03\tshark\n")
    return str(path)


def _thresholds(tmp_path, text):
    path = tmp_path / "thresholds.tsv"
    path.write_text(text)
    return str(path)


def test_no_threshold_means_no_filter(classes):
    assert quality.class_thresholds(classes) is None


def test_one_threshold_applies_to_every_class(classes):
    assert quality.class_thresholds(classes, 0.25).tolist() == [0.25] * 3


def test_a_file_sets_classes_by_name_or_folder_and_the_number_the_rest(classes, tmp_path):
    path = _thresholds(tmp_path, "# per class\ntench\t0.3\n\nn03\t-0.1  # a folder names its class too\n")
    assert quality.class_thresholds(classes, 0.2, path).tolist() == [0.3, 0.2, -0.1]


@pytest.mark.parametrize(
    "text, message",
    [
        ("tench\t0.3\ngoldfish\t0.3\n", r"no threshold for 1 class\(es\) \['shark'\]"),
        ("tench\t0.3\ngoldfsh\t0.3\nshark\t0.3\n", r"line 2: 'goldfsh' is not a class"),
        ("tench\t0.3\ngoldfish\thigh\nshark\t0.3\n", r"line 2: threshold 'high' of 'goldfish' is not a number"),
        (
            "tench\t0.3\ngoldfish\t1.5\nshark\t0.3\n",
            r"line 2: a CLIP score threshold is a cosine similarity in \[-1, 1\], got 1.5",
        ),
        ("tench 0.3\n", r"line 1: expected '<class><TAB><threshold>'"),
        ("tench\t0.3\nn01\t0.4\n", r"line 2: class 'tench' is given a threshold twice"),
    ],
)
def test_a_bad_thresholds_file_is_refused_with_its_line(classes, tmp_path, text, message):
    with pytest.raises(ValueError, match=message):
        quality.class_thresholds(classes, None, _thresholds(tmp_path, text))


def test_clip_score_is_the_cosine_with_the_class_prompt():
    images = np.array([[1, 0], [0.6, 0.8]], np.float32)
    prompts = np.array([[1, 0], [0, 1]], np.float32)
    assert quality.clip_scores(images, prompts, [0, 1]) == pytest.approx([1.0, 0.8])


def test_collect_counts_the_generated_images_each_class_dropped(tmp_path):
    shard = pd.DataFrame(
        {
            "path": ["a", "b", "c_retry2", "d"],
            "label": [0, 0, 1, 1],
            "attempt": [0, 1, 2, 0],
            "clip_score": [0.4, 0.5, 0.6, 0.7],
            "min_clip_score": [0.3, 0.3, 0.5, 0.5],
        }
    )
    write_manifest(tmp_path / "shard0.csv", shard)
    write_manifest(tmp_path / "subset.csv", pd.DataFrame({"path": ["r"], "label": [0]}))
    (tmp_path / "classes.txt").write_text("x\ny\nz\n")
    collect.collect(
        [str(tmp_path / "shard0.csv")],
        str(tmp_path / "subset.csv"),
        str(tmp_path / "classes.txt"),
        str(tmp_path / "manifest.csv"),
        quality_out=str(tmp_path / "quality.csv"),
    )
    table = pd.read_csv(tmp_path / "quality.csv")
    assert table["class"].tolist() == ["x", "y", "z"]
    assert table.kept.tolist() == [2, 2, 0] and table.dropped.tolist() == [1, 2, 0]
    assert table.min_clip_score.tolist()[:2] == [0.3, 0.5] and np.isnan(table.min_clip_score[2])
