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
from test_config import SMOKE, dry_run

from helpers import snakemake

ROOT = "resources/miniworld-smoke"


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
    config = _config(manifest=f"{ROOT}/shards", embeddings=f"{ROOT}/clip_retrieval")
    result = dry_run(tmp_path, config)
    assert result.returncode == 0, result.stderr[-2000:]
    jobs = _jobs(result.stdout)
    assert jobs["list_pool"] == 1 and jobs["pool_from_clip_retrieval"] == 1
    assert not {"embed_pool", "embed_pool_captions", "merge_pool_embeddings"} & set(jobs)
    assert "results/smoke/data/pool_clip_retrieval.csv" in result.stdout


def test_pool_shards_are_listed_once_and_embedded(tmp_path):
    (tmp_path / ROOT / "shards").mkdir(parents=True)
    result = dry_run(tmp_path, _config(manifest=f"{ROOT}/shards/*.tar"))
    assert result.returncode == 0, result.stderr[-2000:]
    jobs = _jobs(result.stdout)
    assert jobs["list_pool"] == 1 and jobs["embed_pool"] == 2 and "pool_from_clip_retrieval" not in jobs


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


@pytest.mark.e2e
def test_retrieval_from_webdataset_shards_trains_on_tar_members(tmp_path):
    workdir = tmp_path / "run"
    workdir.mkdir()
    snakemake(workdir, f"{ROOT}/pool/manifest.csv", timeout=600)
    manifest = pd.read_csv(workdir / ROOT / "pool" / "manifest.csv")
    manifest["path"] = [str(workdir / path) for path in manifest.path]
    _pack_pool(manifest, workdir / ROOT / "shards")
    config = _config(manifest=f"{ROOT}/shards")
    config["methods"] = {name: config["methods"][name] for name in ("baseline", "retrieve_text")}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    target = "results/smoke/metrics/retrieve_text/seed0.json"
    snakemake(workdir, target, configfile=workdir / "config.yaml", timeout=1200)
    pool = pd.read_csv(workdir / "results" / "smoke" / "data" / "pool_webdataset.csv", dtype={"key": str})
    assert len(pool) == len(manifest) and (pool.NSFW == "UNLIKELY").all()
    added = pd.read_csv(workdir / "results" / "smoke" / "added" / "retrieve_text" / "manifest.csv")
    assert len(added) == 30 and added.path.str.contains(r"\.tar::\d+\.png@\d+\+\d+$").all()
    # Every retrieved member is the pool image of its key: the caption that went with it.
    assert added.caption.tolist() == pool.set_index("path").loc[added.path, "caption"].tolist()
    metrics = json.loads((workdir / target).read_text())
    assert 0 <= metrics["top1"] <= 100
