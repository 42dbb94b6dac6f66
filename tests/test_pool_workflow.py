"""The workflow on pools in other layouts: webdataset shards and a clip-retrieval folder."""

from __future__ import annotations

import copy
import io
import json
import re
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from test_config import SMOKE, dry_run, pretraining

from helpers import snakemake

ROOT = "resources/miniworld-smoke"
MODEL = f"{ROOT}/models/clip"


def _jobs(output: str) -> dict[str, int]:
    """The job counts of a dry run's job stats table."""
    table = output.split("Job stats:")[1].split("total")[0]
    return {match[1]: int(match[2]) for match in re.finditer(r"^(\w+)\s+(\d+)$", table, re.MULTILINE)}


def _config(**pool) -> dict:
    config = copy.deepcopy(SMOKE)
    config["pool"].update(pool)
    return config


def test_a_clip_retrieval_folder_replaces_embedding_the_pool(tmp_path):
    (tmp_path / ROOT / "shards").mkdir(parents=True)
    (tmp_path / ROOT / "clip_retrieval").mkdir()
    config = _config(manifest=f"{ROOT}/shards", embeddings=f"{ROOT}/clip_retrieval", shards=1)
    result = dry_run(tmp_path, config)
    assert result.returncode == 0, result.stderr[-2000:]
    jobs = _jobs(result.stdout)
    # In one job (pool.shards 1), one job lists the tars, as the clip-retrieval folder's keys need.
    assert jobs["list_pool"] == 1 and jobs["pool_from_clip_retrieval"] == 1 and "list_pool_shard" not in jobs
    assert not {"embed_pool", "embed_pool_captions", "merge_pool_embeddings"} & set(jobs)
    assert "results/smoke/data/pool_clip_retrieval.csv" in result.stdout
    # The summary counts the images clip-retrieval left without an embedding as the pool's unreadable ones.
    aggregate = result.stdout.split("rule aggregate:")[1].split("output:")[0]
    assert "results/smoke/embed/pool_images/clip_retrieval.unreadable.csv" in aggregate
    assert "shard0.unreadable.csv" not in aggregate


def test_pool_shards_are_listed_a_block_of_tars_per_pool_job_and_embedded(tmp_path):
    (tmp_path / ROOT / "shards").mkdir(parents=True)
    for name in ("00000.tar", "00001.tar", "00002.tar"):
        (tmp_path / ROOT / "shards" / name).touch()
    # With the mini-world's pre-training, which reads the whole pool as one listing.
    result = dry_run(tmp_path, pretraining(_config(manifest=f"{ROOT}/shards/*.tar")), "--printshellcmds")
    assert result.returncode == 0, result.stderr[-2000:]
    jobs = _jobs(result.stdout)
    # Pool job k lists its block of the tars (in name order, as pool.shards splits rows).
    listed = re.findall(r"input: (.*)\n\s+output: results/smoke/pool/listings/shard(\d)", result.stdout)
    assert sorted((shard, inputs.count(".tar")) for inputs, shard in listed) == [("0", 2), ("1", 1)]
    assert jobs["list_pool_shard"] == 2 and jobs["list_pool_table"] == 1 and jobs["embed_pool"] == 2
    assert "pool_from_clip_retrieval" not in jobs
    # Only the mini-world's pre-training reads the whole pool as one listing.
    readers = re.findall(r"rule (\w+):\n(?:\s+\w+: .*\n)*?\s+input: .*pool_webdataset.csv", result.stdout)
    assert jobs["list_pool"] == 1 and set(readers) == {"pretrain_clip", "pretrain_diffusion"}
    # Embedding reads its own listing, so it starts before the others and their table are made;
    # each later job of the pool reads the listings' table (which checked that no key repeats),
    # which leads to its own listing.
    embedding = re.findall(r"input: (.*)\n\s+output: results/smoke/embed/pool_images/shard(\d).npy", result.stdout)
    assert sorted(embedding) == [
        (f"results/smoke/pool/listings/shard{shard}.parquet, {MODEL}", str(shard)) for shard in (0, 1)
    ]
    assert re.search(r"--manifest results/smoke/pool/listings/shard1.parquet .*--shard 0 --shards 1", result.stdout)
    for rule in ("screen_pool", "search_pool_shard", "merge_pool_shards"):
        block = result.stdout.split(f" {rule}:\n")[1].split("output:")[0]
        assert "results/smoke/pool/listings.csv" in block and "pool_webdataset" not in block, rule


def test_pool_shards_that_match_nothing_are_refused_with_the_key(tmp_path):
    config = _config(manifest="data/pool/*.tar")
    config["miniworld"]["enabled"] = False
    for key, name in (("classes", "classes.txt"), ("train", "train.csv"), ("val", "val.csv")):
        config["dataset"][key] = name
        (tmp_path / name).write_text("")
    result = dry_run(tmp_path, config)
    assert result.returncode != 0
    assert "config pool.manifest: data/pool/*.tar does not exist" in result.stdout + result.stderr


def _pack_pool(manifest: pd.DataFrame, folder, shards: int = 2) -> None:
    """The mini-world's pool as img2dataset would write it: tars of <key>.png, .txt and .json."""
    folder.mkdir(parents=True)
    for shard, rows in enumerate(np.array_split(np.arange(len(manifest)), shards)):
        with tarfile.open(folder / f"{shard:05d}.tar", "w") as tar:
            for row in rows:
                key = f"{shard:05d}{row:04d}"
                item = manifest.iloc[row]
                meta = {"url": f"http://pool/{key}.png", "caption": item.caption, "NSFW": "UNLIKELY"}
                for suffix, data in (
                    (".png", Path(item.path).read_bytes()),
                    (".txt", item.caption.encode()),
                    (".json", json.dumps(meta).encode()),
                ):
                    info = tarfile.TarInfo(key + suffix)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))


def _clip_retrieval_folder(folder, pool: pd.DataFrame, images: np.ndarray, captions: np.ndarray) -> None:
    """The pool as clip-retrieval inference leaves it after reading the shards: two parts, float16."""
    for kind in ("img_emb", "text_emb", "metadata"):
        (folder / kind).mkdir(parents=True)
    for part, rows in enumerate(np.array_split(np.arange(len(pool)), 2)):
        np.save(folder / "img_emb" / f"img_emb_{part}.npy", images[rows].astype(np.float16))
        np.save(folder / "text_emb" / f"text_emb_{part}.npy", captions[rows].astype(np.float16))
        metadata = pool.iloc[rows][["key", "caption", "url", "NSFW"]].rename(columns={"key": "image_path"})
        metadata.to_parquet(folder / "metadata" / f"metadata_{part}.parquet")


@pytest.mark.e2e
@pytest.mark.slow
def test_retrieval_from_webdataset_shards_and_their_clip_retrieval_folder(tmp_path):
    workdir = tmp_path / "run"
    workdir.mkdir()
    snakemake(workdir, f"{ROOT}/pool/manifest.csv", timeout=600)
    manifest = pd.read_csv(workdir / ROOT / "pool" / "manifest.csv")
    manifest["path"] = [str(workdir / path) for path in manifest.path]
    _pack_pool(manifest, workdir / ROOT / "shards")
    config = _config(manifest=f"{ROOT}/shards")
    config["methods"] = {name: config["methods"][name] for name in ("baseline", "retrieve_text", "retrieve_caption")}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    target = "results/smoke/metrics/retrieve_text/seed0.json"
    caption_target = "results/smoke/added/retrieve_caption/manifest.csv"
    # The whole pool's listing too (what pre-training reads), to compare the pool jobs' listings with.
    whole = "results/smoke/data/pool_webdataset.csv"
    snakemake(workdir, target, caption_target, whole, configfile=workdir / "config.yaml", timeout=1200)
    results = workdir / "results" / "smoke"
    pool = pd.read_csv(results / "data" / "pool_webdataset.csv", dtype={"key": str})
    assert len(pool) == len(manifest) and (pool.NSFW == "UNLIKELY").all()
    # Retrieval read the listing of each pool job's tar: the rows of the whole pool's listing.
    listings = [pd.read_parquet(results / "pool" / "listings" / f"shard{shard}.parquet") for shard in (0, 1)]
    assert pd.concat(listings).path.tolist() == pool.path.tolist()
    added = pd.read_csv(results / "added" / "retrieve_text" / "manifest.csv")
    assert len(added) == 30 and added.path.str.contains(r"\.tar::\d+\.png@\d+\+\d+$").all()
    assert added.path.tolist() == pool.path[added.pool_row].tolist()  # pool rows count across the listings
    # Every retrieved member is the pool image of its key: the caption that went with it.
    assert added.caption.tolist() == pool.set_index("path").loc[added.path, "caption"].tolist()
    # Training read the 30 real and 30 retrieved images, the latter from inside the tars.
    metrics = json.loads((workdir / target).read_text())
    assert metrics["n_train_images"] == 60 and 0 <= metrics["top1"] <= 100

    # The same shards as embedded by clip-retrieval: the workflow reads that folder instead of
    # embedding the pool, and retrieves what it retrieved from its own embeddings.
    images = np.concatenate([np.load(results / "embed" / f"pool_images/shard{shard}.npy") for shard in (0, 1)])
    captions = np.concatenate([np.load(results / "embed" / f"pool_captions/shard{shard}.npy") for shard in (0, 1)])
    by_caption = pd.read_csv(workdir / caption_target)
    never_retrieved = sorted(set(range(len(pool))) - set(added.pool_row) - set(by_caption.pool_row))[0]
    images[never_retrieved] = 0  # an image clip-retrieval could not use
    _clip_retrieval_folder(workdir / ROOT / "clip_retrieval", pool, images, captions)
    config = _config(manifest=f"{ROOT}/shards", embeddings=f"{ROOT}/clip_retrieval", shards=1)
    config["experiment"] = "smoke_cr"
    config["methods"] = {name: config["methods"][name] for name in ("baseline", "retrieve_text", "retrieve_caption")}
    (workdir / "config_cr.yaml").write_text(yaml.safe_dump(config))
    again = workdir / "results" / "smoke_cr"
    unreadable_list = "results/smoke_cr/embed/pool_images/clip_retrieval.unreadable.csv"
    # The retrievals and what clip-retrieval could not embed: training was checked above.
    targets = [f"results/smoke_cr/added/{method}/manifest.csv" for method in ("retrieve_text", "retrieve_caption")]
    snakemake(workdir, *targets, unreadable_list, configfile=workdir / "config_cr.yaml", timeout=1200)
    assert not (workdir / "logs" / "smoke_cr" / "embed" / "pool_images").exists()
    listed = pd.read_csv(again / "data" / "pool_clip_retrieval.csv", dtype={"key": str})
    assert listed.path.tolist() == pool.path.tolist() and listed.key.tolist() == pool.key.tolist()
    for method, found in (("retrieve_text", added), ("retrieve_caption", by_caption)):
        retrieved = pd.read_csv(again / "added" / method / "manifest.csv")
        # float16 vectors may swap near ties; nearly all picks are the same.
        assert len(set(retrieved.path) & set(found.path)) >= 0.8 * len(found), method
    assert pd.read_csv(workdir / unreadable_list).path.tolist() == [pool.path[never_retrieved]]
