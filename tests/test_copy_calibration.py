"""A copy threshold calibrated to the CLIP in use (contamination.*_threshold: auto): the
threshold that catches the target share of planted copies, and its false-positive rate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from augbench import copies, copy_calibration
from augbench.copy_calibration import CopyCalibration, calibrate, catching_threshold
from augbench.files import write_json, write_manifest

REPO = Path(__file__).resolve().parents[1]
MINIWORLD_CLIP = f"local-dir:{REPO / 'resources' / 'miniworld' / 'models' / 'clip'}"


def _references() -> np.ndarray:
    """Four unit vectors whose six pairs score 0 but one, which scores 0.96."""
    vectors = np.eye(4, 8, dtype=np.float32)
    vectors[3] = 0.0
    vectors[3, :2] = [0.96, 0.28]  # cosine 0.96 with the first, 0.28 with the second
    return vectors


def test_the_threshold_catches_the_target_share_of_copies_and_counts_the_distinct_pairs_it_reaches():
    # 100 copies: 90 at 0.99, 9 at 0.95 (all shrunk), one at 0.80 (cropped). Catching 99 of them
    # takes 0.95; of the references' 6 distinct pairs, one (0.96) reaches it.
    similarity = np.array([0.99] * 90 + [0.95] * 9 + [0.80], dtype=np.float32)
    transforms = ["jpeg"] * 90 + ["shrunk"] * 9 + ["cropped"]
    result = calibrate(similarity, transforms, _references(), CopyCalibration(catch_share=0.99))
    assert result["threshold"] == pytest.approx(0.95)
    assert result["catch_share"] == 0.99 and result["target_catch_share"] == 0.99
    assert result["catch_by_transform"] == {"jpeg": 1.0, "shrunk": 1.0, "cropped": 0.0}
    assert result["copies"] == 100 and result["lowest_copy_similarity"] == pytest.approx(0.80)
    assert result["pairs"] == 6 and result["reference_images"] == 4
    assert result["false_positive_rate"] == pytest.approx(1 / 6)
    assert result["highest_distinct_similarity"] == pytest.approx(0.96)
    # Images 0 and 3 each have the other at 0.96: half the images would be screened out as copies.
    assert result["false_positive_images"] == 0.5 and result["images_probed"] == 4
    probed = calibrate(similarity, transforms, _references(), CopyCalibration(catch_share=0.99), np.array([1, 3]))
    assert probed["false_positive_images"] == 0.5 and probed["images_probed"] == 2

    # Catching every copy takes the lowest, 0.80: the pair at 0.96 still the only one above it.
    every = calibrate(similarity, transforms, _references(), CopyCalibration(catch_share=1.0))
    assert every["threshold"] == pytest.approx(0.80) and every["catch_share"] == 1.0
    # 90%: the 90 copies at 0.99, above every distinct pair.
    most = calibrate(similarity, transforms, _references(), CopyCalibration(catch_share=0.9))
    assert most["threshold"] == pytest.approx(0.99) and most["false_positive_rate"] == 0.0
    assert most["false_positive_images"] == 0.0
    assert most["catch_by_transform"]["shrunk"] == 0.0


def test_ties_at_the_threshold_are_all_caught():
    # Four copies at 0.9 and one at 0.5: a target of 60% takes 0.9, which catches 80%.
    assert catching_threshold(np.array([0.5, 0.9, 0.9, 0.9, 0.9]), 0.6) == pytest.approx(0.9)
    result = calibrate(np.array([0.5, 0.9, 0.9, 0.9, 0.9]), ["a"] * 5, _references(), CopyCalibration(0.6))
    assert result["catch_share"] == pytest.approx(0.8)


def test_many_references_are_compared_on_a_seeded_sample_of_distinct_pairs():
    rng = np.random.default_rng(0)
    first, second = copy_calibration.distinct_pairs(100, 500, rng)
    assert len(first) == 500 and (first != second).all() and first.max() < 100 and second.max() < 100
    again = copy_calibration.distinct_pairs(100, 500, np.random.default_rng(0))
    assert (again[0] == first).all() and (again[1] == second).all()
    every = copy_calibration.distinct_pairs(4, 6, rng)
    assert sorted(zip(*every)) == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    vectors = _references()
    assert copy_calibration.pair_similarities(vectors, *every).tolist() == pytest.approx([0, 0, 0.96, 0, 0.28, 0])


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (CopyCalibration(catch_share=0), r"catch share must be in \(0, 1\], not 0"),
        (CopyCalibration(catch_share=1.5), r"catch share must be in \(0, 1\], not 1.5"),
        (CopyCalibration(images=0), "images that get copies must be at least 1, not 0"),
        (CopyCalibration(pairs=0), "pairs of distinct images compared must be at least 1, not 0"),
        (
            CopyCalibration(transforms=("blurred",)),
            r"kinds of copy planted must be some of \['jpeg', .*not \['blurred'\]",
        ),
        (CopyCalibration(transforms=()), r"kinds of copy planted must be some of .*, not \[\]"),
    ],
)
def test_bad_calibration_settings_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        calibrate(np.array([0.9]), ["a"], _references(), settings)


def test_a_clip_that_does_not_tell_copies_apart_is_refused():
    with pytest.raises(ValueError, match="does not tell copies of an image from other images"):
        calibrate(np.array([-0.2, 0.5]), ["a", "b"], _references(), CopyCalibration(catch_share=1.0))
    with pytest.raises(ValueError, match="distinct pairs need at least 2 images, not 1"):
        calibrate(np.array([0.9]), ["a"], _references()[:1])


def test_too_few_readable_references_and_mismatched_embeddings_are_refused(tmp_path):
    manifest = tmp_path / "val.csv"
    write_manifest(manifest, pd.DataFrame({"path": ["a.png", "b.png"], "label": [0, 1]}))
    vectors = np.zeros((2, 4), dtype=np.float32)
    vectors[0, 0] = 1.0  # the second image was unreadable: a zero row
    np.save(tmp_path / "val.npy", vectors)
    clip = copy_calibration.ImageEmbedding("m")
    out = str(tmp_path / "out.json")
    with pytest.raises(ValueError, match="val.csv has 1 readable image.s.; calibrating a copy threshold needs"):
        copy_calibration.calibrate_copies(str(manifest), str(tmp_path / "val.npy"), out, clip)
    np.save(tmp_path / "three.npy", np.eye(3, 4, dtype=np.float32))
    with pytest.raises(ValueError, match="three.npy has 3 rows but .*val.csv lists 2 images"):
        copy_calibration.calibrate_copies(str(manifest), str(tmp_path / "three.npy"), out, clip)


def test_the_command_line_reaches_the_settings(monkeypatch):
    calls = []
    result = {"threshold": 0.9, "catch_share": 1, "copies": 4, "catch_by_transform": {}}
    result |= {"false_positive_rate": 0, "pairs": 1, "false_positive_images": 0, "images_probed": 2}
    monkeypatch.setattr(copy_calibration, "calibrate_copies", lambda *args: calls.append(args) or result)
    options = ["--manifest", "v.csv", "--embeddings", "v.npy", "--out", "o.json", "--model", "m"]
    copy_calibration.main(options + ["--catch-share", "0.95", "--images", "7", "--num-workers", "0"])
    manifest, embeddings, out, clip, settings = calls.pop()
    assert (manifest, embeddings, out) == ("v.csv", "v.npy", "o.json")
    assert clip == copy_calibration.ImageEmbedding("m", num_workers=0)
    assert settings == CopyCalibration(catch_share=0.95, images=7)
    copy_calibration.main(options + ["--transforms", "jpeg,cropped"])
    assert calls.pop()[-1] == CopyCalibration(transforms=("jpeg", "cropped"))


def test_a_check_takes_its_calibrated_threshold_and_not_a_second_one(tmp_path):
    calibration = tmp_path / "eval_threshold.json"
    write_json(calibration, {"threshold": 0.913})
    checks = copies.copy_checks(
        copies.CopyChecks(train_threshold=0.95), "v.csv", "v.npy", "t.csv", "t.npy", eval_calibration=str(calibration)
    )
    assert [(check.reason, check.threshold) for check in checks] == [
        (copies.EVAL_DUPLICATE, 0.913),
        (copies.TRAIN_DUPLICATE, 0.95),
    ]
    with pytest.raises(ValueError, match="give --eval-threshold or --eval-calibration, not both"):
        copies.copy_checks(copies.CopyChecks(eval_threshold=0.9), eval_calibration=str(calibration))
    write_json(calibration, {"threshold": 0})
    with pytest.raises(ValueError, match=r"eval_threshold.json holds no threshold in \(0, 1\] \(got 0\)"):
        copies.copy_checks(copies.CopyChecks(), eval_calibration=str(calibration))
    with pytest.raises(ValueError, match="copy calibration .*nowhere.json cannot be read"):
        copies.copy_checks(copies.CopyChecks(), train_calibration=str(tmp_path / "nowhere.json"))


def test_the_tiny_clip_is_calibrated_on_the_copies_it_can_tell_and_refuses_the_rest(miniworld, tmp_path):
    """The mini-world's CLIP (a ViT of 4-pixel patches on 16-pixel digits): calibrated on enlarged
    copies, which it scores near their originals, the threshold catches 99% of them and its
    false-positive rate is the share of the validation digits' pairs at or above it. A digit
    shifted by a crop, or shrunk to 8 pixels, it cannot tell from another digit: on every kind
    of copy no threshold in (0, 1] catches 99%, and the calibration says so."""
    from augbench.embed import ImageEmbedding, embed_images

    manifest = str(miniworld / "val" / "manifest.csv")
    clip = ImageEmbedding(MINIWORLD_CLIP, batch_size=512, num_workers=0)
    vectors = embed_images(manifest, str(tmp_path / "val.npy"), clip)
    out = tmp_path / "eval_threshold.json"
    enlarged = CopyCalibration(transforms=("enlarged",))
    result = copy_calibration.calibrate_copies(manifest, str(tmp_path / "val.npy"), str(out), clip, enlarged)
    assert copies.read_calibration(str(out)) == result
    assert result["copies"] == result["sampled_images"] == result["reference_images"] == len(vectors)
    assert result["catch_share"] >= 0.99 and list(result["catch_by_transform"]) == ["enlarged"]
    assert result["model"] == MINIWORLD_CLIP and 0.9 < result["threshold"] < 1  # each copy is scored against its own
    distinct = (vectors @ vectors.T)[np.triu_indices(len(vectors), k=1)]
    assert result["pairs"] == len(distinct)
    assert result["false_positive_rate"] == pytest.approx(np.mean(distinct >= result["threshold"] - 1e-6))
    assert result["false_positive_rate"] < 0.01
    with pytest.raises(ValueError, match="does not tell copies of an image from other images"):
        copy_calibration.calibrate_copies(manifest, str(tmp_path / "val.npy"), str(out), clip)


def test_the_study_names_the_checks_the_screening_knows():
    from augbench import study

    assert set(study.COPY_CHECKS) == set(copies.CHECK_REASONS)
