"""Download retrieved images that are only URLs (a kNN service's results, a pool of URLs) into files.

    python -m augbench.download --candidates candidates.csv --subset subset.csv --classes classes.txt \
        --images-dir added/m/images --out added/m/manifest.csv --failures added/m/download_failures.csv

Downloads fail (dead links, refused hosts, broken files), so retrieval asks for more
candidates than each class needs (``augbench.quotas.candidate_quotas``: ``factor`` times its quota, see
``augbench.quotas.class_quotas``). img2dataset fetches them all, and ``--out`` lists every
success; the run stops, naming the classes, if one has fewer successes than its quota.
Every failed download is listed with img2dataset's reason. ``augbench.screen_downloads``
then leaves out copies of evaluation and training images and keeps each class's
best-ranked ``quota`` images (``augbench.quotas.keep_best``: highest ``score`` first).
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from augbench.cli import add_settings, run, setting, settings_from, start_logging
from augbench.files import atomic_path, read_classes, read_manifest, write_manifest
from augbench.quotas import class_quotas, keep_best

log = logging.getLogger(__name__)

FAILURE_COLUMNS = ["url", "label", "score", "status", "error"]


@dataclass
class Fetching:
    """How img2dataset fetches a method's candidates, and the quota each class must reach
    (the method's entry: its ``download`` settings and its ``per_class``)."""

    per_class: int | None = setting(None, help="images per class (None: as many as real)", config="methods.*.per_class")
    threads: int = setting(32, help="downloads at once", config="methods.*.download.threads")
    timeout: int = setting(10, help="seconds before a download is given up", config="methods.*.download.timeout")
    retries: int = setting(1, help="further tries of a failed download", config="methods.*.download.retries")
    image_size: int | None = setting(
        None, help="resize larger images to this side (None: as downloaded)", config="methods.*.download.image_size"
    )


def _img2dataset():
    try:
        from img2dataset import download
    except ImportError as error:
        raise ModuleNotFoundError(
            "downloading retrieved URLs needs img2dataset, which this Python does not have: "
            "install augbench's 'download' extra (pip install -e '.[download]'), or run the workflow "
            "with --software-deployment-method conda (envs/download.yaml)"
        ) from error
    return download


def fetch(urls: list[str], folder: str | Path, settings: Fetching | None = None) -> pd.DataFrame:
    """Download ``urls`` into ``folder`` with img2dataset; one row per URL, in order: path ('' if it
    failed), status and error. The folder is emptied first, so no image of an earlier run stays."""
    settings = settings or Fetching()
    download = _img2dataset()
    folder = Path(folder)
    # Emptied here: img2dataset's own "overwrite" mode also deletes the scratch folder it just made.
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as scratch:
        listing = Path(scratch) / "urls.parquet"
        pd.DataFrame({"url": urls, "candidate": range(len(urls))}).to_parquet(listing, index=False)
        download(
            url_list=str(listing),
            input_format="parquet",
            url_col="url",
            save_additional_columns=["candidate"],
            output_folder=str(folder),
            output_format="files",
            incremental_mode="incremental",
            image_size=settings.image_size or 256,
            resize_mode="keep_ratio" if settings.image_size else "no",
            resize_only_if_bigger=True,
            processes_count=1,
            thread_count=settings.threads,
            timeout=settings.timeout,
            retries=settings.retries,
            enable_wandb=False,
        )
    return read_fetched(folder, len(urls))


def read_fetched(folder: str | Path, count: int) -> pd.DataFrame:
    """What img2dataset reported for candidates 0..count-1 (its parquet per shard, its files by key)."""
    folder = Path(folder)
    shards = sorted(folder.glob("*.parquet"))
    report = pd.concat([pd.read_parquet(path) for path in shards], ignore_index=True) if shards else pd.DataFrame()
    files = {path.stem: path for path in folder.rglob("*") if path.suffix in {".jpg", ".png", ".webp"}}
    result = pd.DataFrame({"path": [""] * count, "status": ["not attempted"] * count, "error": [""] * count})
    for row in report.itertuples(index=False):
        candidate = int(row.candidate)
        image = files.get(str(row.key))
        ok = row.status == "success" and image is not None
        result.loc[candidate, ["path", "status", "error"]] = [
            str(image) if ok else "",
            row.status if ok or row.status != "success" else "file missing",
            "" if ok else str(row.error_message or ""),
        ]
    return result


def download(
    candidates_path: str,
    subset_path: str,
    classes_path: str,
    images_dir: str,
    out: str,
    failures_out: str,
    settings: Fetching | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fetch every candidate; write the successes' manifest and the failures, and return both."""
    settings = settings or Fetching()
    candidates = read_manifest(candidates_path)
    if "url" not in candidates:
        raise ValueError(
            f"{candidates_path} has no url column: there is nothing to download (a pool needs a url column)"
        )
    if "score" not in candidates:
        raise ValueError(f"{candidates_path} has no score column to rank the candidates of a class by")
    classes = read_classes(classes_path)
    quotas = class_quotas(read_manifest(subset_path), len(classes), settings.per_class)
    fetched = fetch(candidates.url.tolist(), images_dir, settings)
    failed = fetched.path == ""
    failures = candidates.loc[failed.to_numpy(), ["url", "label", "score"]].assign(
        status=fetched.status[failed].to_numpy(), error=fetched.error[failed].to_numpy()
    )
    _write_csv(failures_out, failures[FAILURE_COLUMNS])
    log.info("%d of %d candidates downloaded, %d failed", int((~failed).sum()), len(candidates), int(failed.sum()))
    fetched_candidates = candidates.assign(path=fetched.path.to_numpy())
    # A class already short stops the run here, before any image is embedded to screen it.
    keep_best(fetched_candidates, ~failed, quotas, classes)
    # Every success is kept, so that screening for copies can fall back on further-ranked ones.
    successes = fetched_candidates[(~failed).to_numpy()].reset_index(drop=True)
    write_manifest(out, successes)
    return successes, failures


def _write_csv(path: str, frame: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def main(argv: list[str] | None = None) -> None:
    # The settings' defaults live in Fetching: an option left out takes it (settings_from).
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidates", required=True, help="manifest of ranked candidates with url and score")
    parser.add_argument("--subset", required=True, help="the real subset, which sets the per-class quota")
    parser.add_argument("--classes", required=True)
    parser.add_argument("--images-dir", required=True, help="folder the images are downloaded into (emptied first)")
    parser.add_argument("--out", required=True, help="manifest of the downloaded images")
    parser.add_argument("--failures", required=True, help="CSV of the failed downloads and why")
    add_settings(parser, Fetching)
    args = parser.parse_args(argv)
    start_logging()
    successes, failures = download(
        args.candidates,
        args.subset,
        args.classes,
        args.images_dir,
        args.out,
        args.failures,
        settings_from(args, Fetching),
    )
    log.info(
        "%d images downloaded, listed in %s; %d failures in %s", len(successes), args.out, len(failures), args.failures
    )


if __name__ == "__main__":
    run(main)
