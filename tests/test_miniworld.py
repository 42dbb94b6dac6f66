import numpy as np
import pandas as pd
from PIL import Image

from augbench.files import read_classes, read_manifest
from augbench.miniworld import data as mw


def test_split_is_disjoint_and_stratified():
    parts = mw.split_digits(n_val_per_class=20, n_train_per_class=10, seed=3)
    val_images, val_labels = parts["val"]
    pool_images, _ = parts["pool"]
    assert np.bincount(val_labels).tolist() == [20] * 10
    assert np.bincount(parts["train"][1]).tolist() == [10] * 10
    # No validation scan enters the pool (sklearn's digits contain no exact duplicates across these).
    val_keys = {img.tobytes() for img in val_images}
    assert not val_keys & {img.tobytes() for img in pool_images}
    assert len(val_images) + len(parts["train"][0]) + len(pool_images) == 1797


def test_split_depends_on_seed_only():
    a = mw.split_digits(5, 5, seed=1)["val"][0]
    b = mw.split_digits(5, 5, seed=1)["val"][0]
    c = mw.split_digits(5, 5, seed=2)["val"][0]
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_build_writes_manifests_images_and_noisy_captions(miniworld):
    classes = read_classes(miniworld / "classes.txt")
    assert classes == mw.CLASS_NAMES
    pool = read_manifest(miniworld / "pool" / "manifest.csv")
    val = read_manifest(miniworld / "val" / "manifest.csv")
    assert len(val) == 50
    assert {"caption", "true_label"} <= set(pool.columns)
    with Image.open(pool.path.iloc[0]) as image:
        assert image.size == (16, 16) and image.mode == "RGB"
    digits = pool[pool.true_label >= 0]
    named = [next((i for i, n in enumerate(classes) if n in cap.split()), -1) for cap in digits.caption]
    wrong_rate = np.mean(np.array(named) != digits.true_label.to_numpy())
    assert 0.12 < wrong_rate < 0.28  # configured 0.2
    distractor_share = (pool.true_label < 0).mean()
    assert 0.05 < distractor_share < 0.15  # configured 0.1


def test_caption_names_the_true_class_without_noise():
    rng = np.random.default_rng(0)
    for label in range(10):
        caption = mw.caption_for(label, wrong_caption_rate=0.0, rng=rng)
        assert mw.CLASS_NAMES[label] in caption.split()
    captions = {mw.caption_for(3, 1.0, rng) for _ in range(50)}
    assert all("three" not in c.split() for c in captions)


def test_pool_manifest_is_shuffled(miniworld):
    pool = pd.read_csv(miniworld / "pool" / "manifest.csv")
    assert not pool.path.is_monotonic_increasing
