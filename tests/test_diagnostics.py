"""The diagnostics of added images against cases whose answers are known in closed form."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from augbench import diagnostics
from augbench.files import write_manifest


def unit_rows(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def rotation(angle: float) -> np.ndarray:
    return np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])


# -- Fréchet distance ------------------------------------------------------------------------


def test_the_frechet_distance_of_a_set_to_itself_is_zero():
    embeddings = unit_rows(np.random.default_rng(0).normal(size=(200, 16)))
    assert diagnostics.frechet_distance(embeddings, embeddings) == pytest.approx(0, abs=1e-8)


def test_the_frechet_distance_of_a_set_to_itself_is_zero_with_fewer_images_than_dimensions():
    """A class's covariance from 10 images in 64 dimensions is singular."""
    embeddings = unit_rows(np.random.default_rng(1).normal(size=(10, 64)))
    assert diagnostics.frechet_distance(embeddings, embeddings) == pytest.approx(0, abs=1e-6)


def test_the_frechet_distance_of_diagonal_gaussians_is_the_closed_form():
    # Commuting covariances: |Δμ|² + Σ (√a_i - √b_i)².
    mean_a, mean_b = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    var_a, var_b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
    expected = 5.0 + (1 - 2) ** 2 + (2 - 1) ** 2 + 0.0
    distance = diagnostics.frechet_distance_of_gaussians(mean_a, np.diag(var_a), mean_b, np.diag(var_b), epsilon=0)
    assert distance == pytest.approx(expected, rel=1e-9)


def test_the_frechet_distance_of_non_commuting_gaussians_is_the_closed_form():
    # In two dimensions Tr √M = √(Tr M + 2 √det M), with M = Σa Σb (its eigenvalues are real, non-negative).
    cov_a = rotation(0.3) @ np.diag([4.0, 1.0]) @ rotation(0.3).T
    cov_b = rotation(1.1) @ np.diag([0.5, 3.0]) @ rotation(1.1).T
    mean_a, mean_b = np.array([1.0, -1.0]), np.array([0.0, 2.0])
    product = cov_a @ cov_b
    root_trace = np.sqrt(np.trace(product) + 2 * np.sqrt(np.linalg.det(product)))
    expected = 10.0 + np.trace(cov_a) + np.trace(cov_b) - 2 * root_trace
    distance = diagnostics.frechet_distance_of_gaussians(mean_a, cov_a, mean_b, cov_b, epsilon=0)
    assert distance == pytest.approx(expected, rel=1e-9)


def test_the_frechet_distance_of_samples_approaches_that_of_their_gaussians():
    rng = np.random.default_rng(2)
    cov_b = rotation(0.7) @ np.diag([2.0, 0.5]) @ rotation(0.7).T
    a = rng.multivariate_normal([0, 0], np.eye(2), size=200_000)
    b = rng.multivariate_normal([3, 4], cov_b, size=200_000)
    exact = diagnostics.frechet_distance_of_gaussians([0, 0], np.eye(2), [3, 4], cov_b, epsilon=0)
    assert diagnostics.frechet_distance(a, b) == pytest.approx(exact, rel=0.01)


def test_the_epsilon_moves_the_distance_by_at_most_epsilon_per_dimension():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(50, 8)), rng.normal(loc=0.5, size=(60, 8))
    assert diagnostics.frechet_distance(a, b, epsilon=1e-6) == pytest.approx(
        diagnostics.frechet_distance(a, b, epsilon=0), abs=8e-6
    )


def test_the_per_class_frechet_distance_averages_classes_with_two_images_on_both_sides():
    rng = np.random.default_rng(4)
    a = rng.normal(size=(9, 2))
    b = rng.normal(size=(9, 2)) + 1
    a_labels = [0, 0, 0, 1, 1, 1, 2, 2, 2]
    b_labels = [0, 0, 0, 1, 1, 1, 2, 3, 3]  # class 2 has one image in b, class 3 none in a
    expected = np.mean([diagnostics.frechet_distance(a[:3], b[:3]), diagnostics.frechet_distance(a[3:6], b[3:6])])
    assert diagnostics.class_frechet_distance(a, a_labels, b, b_labels) == pytest.approx(expected)


def test_the_per_class_frechet_distance_of_no_shared_class_is_nan():
    a, b = np.zeros((3, 2)), np.ones((3, 2))
    assert np.isnan(diagnostics.class_frechet_distance(a, [0, 0, 0], b, [1, 1, 1]))


# -- precision, recall, density, coverage -----------------------------------------------------


def test_prdc_of_a_set_against_itself_is_perfect():
    embeddings = unit_rows(np.random.default_rng(5).normal(size=(100, 8)))
    values = diagnostics.prdc(embeddings, embeddings.copy(), k=5)
    assert values["precision"] == 1 and values["recall"] == 1 and values["coverage"] == 1
    # Each real ball holds its centre and the k - 1 neighbours nearer than its radius: k points per ball.
    assert values["density"] == pytest.approx(1.0)


def test_prdc_of_far_apart_sets_is_zero():
    rng = np.random.default_rng(6)
    real = rng.normal(scale=0.1, size=(50, 4))
    fake = rng.normal(scale=0.1, size=(50, 4)) + 100
    assert diagnostics.prdc(real, fake, k=5) == {"precision": 0, "recall": 0, "density": 0, "coverage": 0}


def test_prdc_of_fake_images_on_half_the_real_ones_covers_half():
    """Fake images that are the real images of 25 of 50 well-separated clusters: precise, dense as
    the real images are, but recalling and covering half of them."""
    rng = np.random.default_rng(7)
    real = np.repeat(np.eye(50) * 10, 6, axis=0) + rng.normal(scale=0.01, size=(300, 50))
    values = diagnostics.prdc(real, real[:150].copy(), k=5)
    assert values == pytest.approx({"precision": 1, "recall": 0.5, "density": 1, "coverage": 0.5})


def test_prdc_needs_more_points_than_neighbours():
    with pytest.raises(ValueError, match="need over 5 fake points"):
        diagnostics.prdc(np.zeros((10, 2)), np.zeros((5, 2)), k=5)


# -- Vendi score ------------------------------------------------------------------------------


def test_the_vendi_score_of_copies_of_one_image_is_one():
    one = unit_rows(np.random.default_rng(8).normal(size=(1, 16)))
    assert diagnostics.vendi_score(np.repeat(one, 20, axis=0)) == pytest.approx(1.0)


@pytest.mark.parametrize("n", [1, 5, 16])
def test_the_vendi_score_of_n_orthogonal_images_is_n(n):
    orthonormal, _ = np.linalg.qr(np.random.default_rng(9).normal(size=(16, 16)))
    assert diagnostics.vendi_score(orthonormal[:n]) == pytest.approx(n)


def test_the_vendi_score_counts_two_equally_filled_clusters_as_two():
    basis = np.eye(4)
    assert diagnostics.vendi_score(np.repeat(basis[:2], [7, 7], axis=0)) == pytest.approx(2.0)


def test_the_class_vendi_score_averages_the_classes():
    basis = np.eye(4)
    embeddings = np.vstack([basis[[0, 0, 0]], basis[[0, 1, 2]]])  # class 0: one image thrice; class 1: three
    assert diagnostics.class_vendi_score(embeddings, [0, 0, 0, 1, 1, 1]) == pytest.approx(2.0)


# -- label agreement and CLIP score -----------------------------------------------------------

PROMPTS = np.eye(3)  # class c's prompt embedding is the c-th axis


def test_label_agreement_is_the_share_of_images_whose_zero_shot_class_is_their_label():
    images = unit_rows(np.array([[1.0, 0.1, 0], [0.2, 1.0, 0], [0.9, 0.1, 0.3], [0, 0.1, 1.0]]))
    labels = [0, 1, 2, 2]  # the third image looks like class 0
    assert diagnostics.zero_shot_classes(images, PROMPTS).tolist() == [0, 1, 0, 2]
    assert diagnostics.label_agreement(images, labels, PROMPTS) == pytest.approx(0.75)


def test_clip_score_is_the_mean_cosine_with_the_class_prompt():
    images = np.array([[0.6, 0.8, 0], [0, 0, 1.0]])
    assert diagnostics.clip_score(images, [1, 2], PROMPTS) == pytest.approx((0.8 + 1.0) / 2)


# -- the command line -------------------------------------------------------------------------


def _write_set(tmp_path, name, embeddings, labels):
    manifest = tmp_path / f"{name}.csv"
    write_manifest(manifest, pd.DataFrame({"path": [f"{name}/{i}.png" for i in range(len(labels))], "label": labels}))
    array = tmp_path / f"{name}.npy"
    np.save(array, np.asarray(embeddings, np.float32))
    return str(manifest), str(array)


def test_the_command_line_writes_a_row_of_every_diagnostic(tmp_path):
    rng = np.random.default_rng(10)
    classes, dimensions = 3, 12
    prompts = np.eye(dimensions)[:classes]

    def images(per_class):
        labels = np.repeat(np.arange(classes), per_class)
        return unit_rows(prompts[labels] * 3 + rng.normal(size=(len(labels), dimensions))), labels

    train, val, added = images(10), images(20), images(8)
    added_embeddings = added[0].copy()
    added_embeddings[0] = 0  # an unreadable image
    prompts_path = tmp_path / "prompts.npy"
    np.save(prompts_path, prompts.astype(np.float32))
    added_manifest, added_npy = _write_set(tmp_path, "added", added_embeddings, added[1])
    train_manifest, train_npy = _write_set(tmp_path, "train", *train)
    val_manifest, val_npy = _write_set(tmp_path, "val", *val)
    out = tmp_path / "diagnostics" / "method.csv"
    diagnostics.main(
        [
            "method", "--method", "gen_x",
            "--added", added_manifest, "--added-embeddings", added_npy,
            "--subset", train_manifest, "--subset-embeddings", train_npy,
            "--val", val_manifest, "--val-embeddings", val_npy,
            "--class-prompts", str(prompts_path), "--out", str(out), "--nearest-k", "3",
        ]
    )  # fmt: skip
    table = pd.read_csv(out)
    assert table.columns.tolist() == diagnostics.COLUMNS
    row = table.iloc[0]
    assert row["method"] == "gen_x" and row["n_added"] == 24
    assert np.isnan(row["label_precision"])  # no pool with true classes given: a generation method's row
    assert not table.drop(columns="label_precision").isna().any().any()
    readable, labels = added[0][1:], added[1][1:]
    assert row["label_agreement"] == pytest.approx(diagnostics.label_agreement(readable, labels, prompts))
    assert row["fd_clip_val"] == pytest.approx(diagnostics.frechet_distance(readable, val[0]), rel=1e-4)
    assert row["vendi"] == pytest.approx(diagnostics.class_vendi_score(readable, labels), rel=1e-4)
    assert 0 <= row["precision"] <= 1 and 0 <= row["coverage"] <= 1


def test_the_command_line_refuses_embeddings_that_do_not_match_their_manifest(tmp_path):
    manifest, _ = _write_set(tmp_path, "added", np.eye(3), [0, 1, 2])
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.eye(3)[:2].astype(np.float32))
    with pytest.raises(ValueError, match="has 2 rows but .* lists 3 images"):
        diagnostics.read_embedded(manifest, str(wrong))


def test_join_puts_the_methods_rows_in_one_table_in_the_order_given(tmp_path):
    parts = []
    for name in ("retrieve_text", "gen_classname"):
        part = tmp_path / f"{name}.csv"
        row = {column: 0.5 for column in diagnostics.COLUMNS} | {"method": name, "n_added": 10}
        diagnostics.write_diagnostics(str(part), [row])
        parts += ["--part", str(part)]
    diagnostics.main(["join", *parts, "--out", str(tmp_path / "diagnostics.csv")])
    table = pd.read_csv(tmp_path / "diagnostics.csv")
    assert table.method.tolist() == ["retrieve_text", "gen_classname"]
    assert table.columns.tolist() == diagnostics.COLUMNS


def test_every_diagnostics_setting_of_the_config_reaches_the_command_line():
    """The schema's defaults are the dataclass's (tests/test_settings.py); no key is left unread."""
    schema = yaml.safe_load((Path(__file__).resolve().parents[1] / "workflow/schemas/config.schema.yaml").read_text())
    keys = {f"diagnostics.{key}" for key in schema["properties"]["diagnostics"]["properties"]}
    keys.remove("diagnostics.enabled")  # whether the workflow asks for diagnostics at all
    assert {item.metadata["config"] for item in fields(diagnostics.Diagnostics)} == keys


def test_a_method_none_of_whose_images_could_be_read_gets_an_empty_row():
    nothing = diagnostics.Embedded(np.zeros((0, 3), np.float32), np.zeros(0, int))
    real = diagnostics.Embedded(np.eye(3, dtype=np.float32), np.arange(3))
    row = diagnostics.diagnose(nothing, real, real, np.eye(3), diagnostics.Diagnostics())
    assert set(row) == set(diagnostics.COLUMNS[2:]) and all(np.isnan(value) for value in row.values())


def test_label_precision_is_the_share_of_added_pool_images_of_their_true_class(tmp_path):
    # Four added pool images, three of their true class (the distractor, true class -1, is wrong),
    # and a generated image the pool does not hold, which does not count.
    pool = pd.DataFrame(
        {"path": ["p0.png", "p1.png", "p2.png", "p3.png", "p4.png"], "label": -1, "true_label": [0, 1, 1, -1, 2]}
    )
    pool.to_csv(tmp_path / "pool.csv", index=False)
    added = pd.DataFrame({"path": ["p0.png", "p1.png", "p2.png", "p3.png", "gen.png"], "label": [0, 1, 1, 2, 0]})
    truth = diagnostics.pool_truth(str(tmp_path / "pool.csv"))
    assert diagnostics.label_precision(added, truth) == pytest.approx(0.75)
    pool.to_parquet(tmp_path / "pool.parquet")
    assert diagnostics.label_precision(added, diagnostics.pool_truth(str(tmp_path / "pool.parquet"))) == 0.75
    # A web pool knows no true classes; generated images are no pool images.
    pool.drop(columns="true_label").to_csv(tmp_path / "web.csv", index=False)
    assert diagnostics.pool_truth(str(tmp_path / "web.csv")) is None
    assert np.isnan(diagnostics.label_precision(added, None))
    assert np.isnan(diagnostics.label_precision(added.iloc[4:], truth))
    # A pool listed in blocks (augbench.pool table): its listings' true classes, or none.
    from augbench import pool as pool_listing

    for name, frame in (("known", pool), ("web", pool.drop(columns="true_label"))):
        listings = [str(tmp_path / f"{name}{block}.parquet") for block in (0, 1)]
        pool_listing.write_listing(listings[0], frame.iloc[:2].assign(key=["a", "b"]))
        pool_listing.write_listing(listings[1], frame.iloc[2:].assign(key=["c", "d", "e"]))
        pool_listing.listing_table(listings, str(tmp_path / f"{name}.table.csv"))
    assert diagnostics.label_precision(added, diagnostics.pool_truth(str(tmp_path / "known.table.csv"))) == 0.75
    assert diagnostics.pool_truth(str(tmp_path / "web.table.csv")) is None
