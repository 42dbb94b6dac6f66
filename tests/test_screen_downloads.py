import numpy as np
import pandas as pd
import pytest
from PIL import Image

from augbench import screen_downloads
from augbench.copies import EVAL_DUPLICATE, TRAIN_DUPLICATE, CopyChecks
from augbench.embed import ImageEmbedding, embed_images
from augbench.files import read_classes, read_manifest, write_manifest

from helpers import REPO

MINIWORLD_CLIP = f"local-dir:{REPO / 'resources' / 'miniworld' / 'models' / 'clip'}"
# The tiny CLIP's copy threshold set by hand (as in tests/test_exclude.py).
THRESHOLD = 0.92


@pytest.fixture
def downloads(miniworld, tmp_path):
    """Downloads as a kNN service and img2dataset would leave them: each class's training
    images at random scores, and above them, best-ranked, a copy of one of its validation
    images (the file, and rescaled) and a download cut off mid-file; a subset of 2 per class."""
    rng = np.random.default_rng(0)
    train = read_manifest(miniworld / "train" / "manifest.csv")
    val = read_manifest(miniworld / "val" / "manifest.csv")
    first_val = val.groupby("label").head(1)
    planted, folder = [], tmp_path / "downloaded"
    folder.mkdir()
    for row in first_val.itertuples():
        with Image.open(row.path) as image:
            image.convert("RGB").save(folder / f"{row.label}_copy.png")
            image.convert("RGB").resize((image.width * 2, image.height * 2), Image.BICUBIC).save(
                folder / f"{row.label}_x2.jpg", quality=95
            )
        planted += [(str(folder / f"{row.label}_{kind}"), row.label, 2.0) for kind in ("copy.png", "x2.jpg")]
    cut = folder / "cut.jpg"
    cut.write_bytes(open(train.path[0], "rb").read()[:40])
    subset = train.groupby("label").head(2)
    rest = train.drop(subset.index)
    # A copy of a subset image, ranked high: only the training check (off in most tests) drops it.
    train_copy = folder / "train_copy.png"
    with Image.open(subset.path.iloc[0]) as image:
        image.convert("RGB").save(train_copy)
    downloaded = pd.concat(
        [
            pd.DataFrame(planted, columns=["path", "label", "score"]),
            pd.DataFrame({"path": [str(cut)], "label": [int(train.label[0])], "score": [3.0]}),
            pd.DataFrame({"path": [str(train_copy)], "label": [int(subset.label.iloc[0])], "score": [2.5]}),
            rest.assign(score=rng.uniform(0, 1, len(rest)))[["path", "label", "score"]],
        ],
        ignore_index=True,
    ).assign(url=lambda frame: "http://example.org/" + frame.index.astype(str))
    write_manifest(tmp_path / "downloaded.csv", downloaded)
    write_manifest(tmp_path / "subset.csv", subset)
    embed_images(
        str(miniworld / "val" / "manifest.csv"),
        str(tmp_path / "val.npy"),
        ImageEmbedding(MINIWORLD_CLIP, num_workers=0),
    )
    return tmp_path, [path for path, _, _ in planted], str(cut)


def _screen(tmp_path, miniworld, checks, model=MINIWORLD_CLIP, per_class=None):
    return screen_downloads.screen_downloads(
        str(tmp_path / "downloaded.csv"),
        str(tmp_path / "subset.csv"),
        str(miniworld / "classes.txt"),
        str(tmp_path / "manifest.csv"),
        str(tmp_path / "excluded.csv"),
        ImageEmbedding(model, num_workers=0),
        per_class=per_class,
        **checks,
    )


def _eval_check(miniworld, tmp_path, threshold=THRESHOLD):
    val = str(miniworld / "val" / "manifest.csv")
    return {
        "checks": CopyChecks(eval_threshold=threshold),
        "eval_manifest": val,
        "eval_embeddings": str(tmp_path / "val.npy"),
    }


def test_copies_of_validation_images_and_broken_files_give_way_to_further_ranked_downloads(downloads, miniworld):
    tmp_path, planted, cut = downloads
    kept, excluded = _screen(tmp_path, miniworld, _eval_check(miniworld, tmp_path))
    # Every copy is left out, matched to its original, and so is the broken file.
    copies = excluded[excluded.reason == EVAL_DUPLICATE]
    assert sorted(copies.path) == sorted(planted)
    originals = read_manifest(miniworld / "val" / "manifest.csv").groupby("label").head(1).path.tolist()
    assert sorted(set(copies.matched)) == sorted(originals)
    assert excluded[excluded.reason == screen_downloads.UNREADABLE].path.tolist() == [cut]
    # Each class keeps its quota (2, as in the subset) of the best-ranked remaining downloads.
    downloaded = read_manifest(tmp_path / "downloaded.csv")
    usable = downloaded[~downloaded.path.isin(set(planted) | {cut})]
    best = usable.sort_values("score", ascending=False, kind="stable").groupby("label").head(2)
    assert sorted(kept.path) == sorted(best.path)
    assert read_manifest(tmp_path / "manifest.csv").path.tolist() == kept.path.tolist()
    assert pd.read_csv(tmp_path / "excluded.csv").path.tolist() == excluded.path.tolist()


def test_without_screening_the_best_ranked_downloads_are_kept_without_embedding_them(downloads, miniworld):
    tmp_path, _, _ = downloads
    # A model that does not exist: nothing may be embedded when every check is off.
    kept, excluded = _screen(tmp_path, miniworld, _eval_check(miniworld, tmp_path, None), model="local-dir:/none")
    assert excluded.empty
    downloaded = read_manifest(tmp_path / "downloaded.csv")
    best = downloaded.sort_values("score", ascending=False, kind="stable").groupby("label").head(2)
    assert sorted(kept.path) == sorted(best.path)


def test_a_class_left_short_by_its_copies_is_named_with_what_to_change(downloads, miniworld):
    tmp_path, planted, _ = downloads
    downloaded = read_manifest(tmp_path / "downloaded.csv")
    classes = read_classes(miniworld / "classes.txt")
    # Class 1 has 2 copies among its downloads: asking for all of them leaves it 2 short.
    offered = int((downloaded.label == 1).sum())
    expected = rf"{classes[1]!r} \({offered - 2} of {offered}, from {offered} candidates\)"
    with pytest.raises(ValueError, match=rf"too few screened downloads for class\(es\) .*{expected}.*download\.factor"):
        _screen(tmp_path, miniworld, _eval_check(miniworld, tmp_path), per_class=offered)
    assert not (tmp_path / "manifest.csv").exists()


def test_the_command_line_runs_both_checks(downloads, miniworld):
    tmp_path, planted, _ = downloads
    arguments = ["--downloaded", str(tmp_path / "downloaded.csv"), "--subset", str(tmp_path / "subset.csv")]
    arguments += ["--classes", str(miniworld / "classes.txt"), "--model", MINIWORLD_CLIP]
    arguments += ["--out", str(tmp_path / "manifest.csv"), "--excluded", str(tmp_path / "excluded.csv")]
    arguments += ["--eval-manifest", str(miniworld / "val" / "manifest.csv"), "--eval-threshold", str(THRESHOLD)]
    arguments += ["--eval-embeddings", str(tmp_path / "val.npy"), "--train-threshold", str(THRESHOLD)]
    with pytest.raises(ValueError, match="--train-threshold needs --train-manifest and --train-embeddings"):
        screen_downloads.main(arguments)
    embed_images(
        str(tmp_path / "subset.csv"), str(tmp_path / "subset.npy"), ImageEmbedding(MINIWORLD_CLIP, num_workers=0)
    )
    arguments += ["--train-manifest", str(tmp_path / "subset.csv"), "--train-embeddings", str(tmp_path / "subset.npy")]
    screen_downloads.main(arguments)
    excluded = pd.read_csv(tmp_path / "excluded.csv")
    assert set(planted) <= set(excluded.path[excluded.reason == EVAL_DUPLICATE])
    train_copies = excluded[excluded.reason == TRAIN_DUPLICATE].set_index("path").matched
    assert (
        train_copies[str(tmp_path / "downloaded" / "train_copy.png")] == read_manifest(tmp_path / "subset.csv").path[0]
    )
    assert not set(read_manifest(tmp_path / "manifest.csv").path) & set(excluded.path)
