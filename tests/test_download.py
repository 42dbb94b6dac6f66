import numpy as np
import pandas as pd
import pytest

from augbench import download, quotas
from augbench.files import read_manifest, write_classes, write_manifest


def test_candidates_are_the_quota_times_the_factor_rounded_up():
    assert quotas.candidate_quotas([10, 4, 0, 1], 1.5) == [15, 6, 0, 2]
    # 10 * 1.1 is 11.000000000000002 in floating point: still 11 candidates, not 12.
    assert quotas.candidate_quotas([10, 3], 1.1) == [11, 4]
    assert quotas.candidate_quotas([7], 1.0) == [7]
    with pytest.raises(ValueError, match="at least 1"):
        quotas.candidate_quotas([5], 0.5)


def _candidates():
    # Class 0: five candidates, class 1: three; rows deliberately not in score order.
    return pd.DataFrame(
        {
            "url": [f"u{i}" for i in range(8)],
            "label": [0, 0, 0, 0, 0, 1, 1, 1],
            "score": [0.5, 0.9, 0.7, 0.8, 0.6, 0.4, 0.3, 0.35],
        }
    )


def test_keeps_the_best_ranked_successes_of_each_class():
    candidates = _candidates()
    # u1 (0.9, the best of class 0) and u7 (0.35) failed.
    arrived = pd.Series([True, False, True, True, True, True, True, False])
    kept = quotas.keep_best(candidates, arrived, quotas=[3, 2], classes=["a", "b"])
    assert kept.url.tolist() == ["u3", "u2", "u4", "u5", "u6"]
    assert kept.label.tolist() == [0, 0, 0, 1, 1]


def test_a_class_short_of_successes_is_named_with_its_counts():
    candidates = _candidates()
    arrived = pd.Series([True, True, True, True, True, False, True, False])
    with pytest.raises(ValueError, match=r"class\(es\) 'b' \(1 of 2, from 3 candidates\)") as error:
        quotas.keep_best(candidates, arrived, quotas=[3, 2], classes=["a", "b"])
    assert "'a'" not in str(error.value)
    assert "download.factor" in str(error.value)


def test_a_class_without_candidates_is_short_and_a_zero_quota_needs_none():
    candidates = _candidates()[lambda f: f.label == 0]
    kept = quotas.keep_best(candidates, pd.Series([True] * 5), quotas=[2, 0, 0], classes=["a", "b", "c"])
    assert len(kept) == 2
    with pytest.raises(ValueError, match=r"'b' \(0 of 1, from 0 candidates\)"):
        quotas.keep_best(candidates, pd.Series([True] * 5), quotas=[2, 1], classes=["a", "b"])


def test_download_lists_every_success_and_the_failures(tmp_path, monkeypatch):
    candidates = _candidates().assign(path=lambda f: f.url)
    write_manifest(tmp_path / "candidates.csv", candidates)
    write_manifest(tmp_path / "subset.csv", pd.DataFrame({"path": ["r0", "r1", "r2"], "label": [0, 0, 1]}))
    write_classes(tmp_path / "classes.txt", ["a", "b"])

    def fake_fetch(urls, folder, *args):
        # img2dataset's outcome, without the network: u1 and u7 fail.
        failed = {"u1": "HTTP Error 404", "u7": "timed out"}
        return pd.DataFrame(
            {
                "path": ["" if url in failed else f"{folder}/{url}.jpg" for url in urls],
                "status": ["failed_to_download" if url in failed else "success" for url in urls],
                "error": [failed.get(url, "") for url in urls],
            }
        )

    monkeypatch.setattr(download, "fetch", fake_fetch)
    arguments = [str(tmp_path / name) for name in ("candidates.csv", "subset.csv", "classes.txt", "images")]
    arguments += [str(tmp_path / "downloaded.csv"), str(tmp_path / "failures.csv")]
    download.download(*arguments)
    downloaded = read_manifest(tmp_path / "downloaded.csv")
    # Every success, not only the quotas' best (2 and 1, as the real images): screening for
    # copies may still drop some, and falls back on the rest.
    assert downloaded.url.tolist() == ["u0", "u2", "u3", "u4", "u5", "u6"]
    assert downloaded.path.tolist() == [f"{tmp_path}/images/{url}.jpg" for url in downloaded.url]
    written = pd.read_csv(tmp_path / "failures.csv")
    assert written.url.tolist() == ["u1", "u7"]
    assert written.error.tolist() == ["HTTP Error 404", "timed out"]
    # A class with fewer successes than its quota stops the run before anything is screened.
    write_manifest(tmp_path / "subset.csv", pd.DataFrame({"path": ["r0", "r1", "r2"], "label": [0, 1, 1]}))
    monkeypatch.setattr(
        download,
        "fetch",
        lambda urls, folder, *args: fake_fetch(urls, folder).assign(
            path=lambda f: f.path.where(~f.path.str.endswith(("u5.jpg", "u6.jpg")), "")
        ),
    )
    with pytest.raises(ValueError, match=r"too few downloads for class\(es\) 'b' \(0 of 2, from 3 candidates\)"):
        download.download(*arguments)


def test_candidates_without_urls_are_refused(tmp_path):
    write_manifest(tmp_path / "candidates.csv", pd.DataFrame({"path": ["a.png"], "label": [0], "score": [1.0]}))
    with pytest.raises(ValueError, match="no url column"):
        download.download(str(tmp_path / "candidates.csv"), "unused", "unused", "d", "o", "f")


def test_missing_img2dataset_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "img2dataset", None)
    with pytest.raises(ModuleNotFoundError, match=r"'download' extra .*envs/download.yaml"):
        download.fetch(["http://127.0.0.1:1/a.png"], "unused")


def test_a_pool_of_urls_gives_candidates_beyond_the_quota_with_their_urls(tmp_path):
    from pool_search import retrieve_whole_pool

    from augbench.sharded_retrieval import Retrieval

    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(20, 4)).astype(np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    pool = pd.DataFrame({"path": "", "label": -1, "url": [f"http://example.org/{i}.jpg" for i in range(20)]})
    write_manifest(tmp_path / "pool.csv", pool)
    np.save(tmp_path / "pool.npy", embeddings)
    np.save(tmp_path / "queries.npy", embeddings[:2])
    write_manifest(tmp_path / "subset.csv", pd.DataFrame({"path": ["a", "b", "c", "d"], "label": [0, 0, 0, 1]}))
    write_classes(tmp_path / "classes.txt", ["a", "b"])
    arguments = [str(tmp_path / name) for name in ("pool.csv", "pool.npy", "queries.npy", "subset.csv", "classes.txt")]
    added = retrieve_whole_pool(*arguments, str(tmp_path / "work"), Retrieval(candidate_factor=1.5))
    # Quotas 3 and 1 (as the real images), times 1.5, rounded up.
    assert added.groupby("label").size().tolist() == [5, 2]
    assert added.url.tolist() == [pool.url[row] for row in added.pool_row]
    assert added.url.iloc[0] == "http://example.org/0.jpg"  # the query itself is the nearest


def test_the_report_counts_failed_downloads_per_method(tmp_path):
    from augbench.aggregate import downloads_markdown

    pd.DataFrame({"url": ["u1", "u2"], "label": [0, 1], "score": 0.5, "status": "x", "error": "y"}).to_csv(
        tmp_path / "a.csv", index=False
    )
    pd.DataFrame(columns=download.FAILURE_COLUMNS).to_csv(tmp_path / "b.csv", index=False)
    pd.DataFrame(
        {
            "pool_row": [0, 0, 3],
            "path": ["p0", "p0", "p3"],
            "reason": ["evaluation duplicate", "training duplicate"] * 1 + ["unreadable"],
        }
    ).assign(similarity=1.0, matched="m").to_csv(tmp_path / "a_excluded.csv", index=False)
    pd.DataFrame(columns=["pool_row", "path", "reason", "similarity", "matched"]).to_csv(
        tmp_path / "b_excluded.csv", index=False
    )
    failures = [("retrieve_laion", str(tmp_path / "a.csv")), ("retrieve_urls", str(tmp_path / "b.csv"))]
    excluded = [
        ("retrieve_laion", str(tmp_path / "a_excluded.csv")),
        ("retrieve_urls", str(tmp_path / "b_excluded.csv")),
    ]
    text = downloads_markdown(failures, excluded)
    # Two images left out, one of them for two reasons.
    assert "| retrieve_laion | 2 | 2 (1 evaluation duplicate, 1 training duplicate, 1 unreadable) |" in text
    assert "| retrieve_urls | 0 | 0 |" in text
    assert downloads_markdown([]) == ""
