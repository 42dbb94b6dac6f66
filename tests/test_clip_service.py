"""The clip_service backend and the download step against the real tools on loopback.

A real ``clip-retrieval back`` (tests/clip_back.py, with the mini-world's CLIP) serves a tiny
index that ``clip-retrieval index`` builds; the pool's images are served by ``python -m
http.server`` and fetched by img2dataset. These run in their own venv (clip-retrieval pins
numpy<2): ``make clip-venv``; without it the tests are skipped.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from augbench.files import read_manifest, write_classes, write_manifest

REPO = Path(__file__).resolve().parents[1]
CLIP_PYTHON = REPO / ".venv-clip" / "bin" / "python"
MODEL = REPO / "resources" / "miniworld" / "models" / "clip"


def _clip_venv_ready() -> bool:
    if not CLIP_PYTHON.exists():
        return False
    probe = "import importlib.util as u, sys; sys.exit(not all(map(u.find_spec, ['clip_retrieval', 'img2dataset'])))"
    return subprocess.run([str(CLIP_PYTHON), "-c", probe]).returncode == 0


pytestmark = [
    pytest.mark.e2e,
    pytest.mark.clip_service,
    pytest.mark.skipif(not _clip_venv_ready(), reason="no .venv-clip with clip-retrieval, img2dataset: make clip-venv"),
]

# Two classes; pool images 0-5 lie near class 0's query, 6-11 near class 1's. Images 5 and
# 11, the best of each class, are not on the server: their downloads fail.
N_POOL, MISSING = 12, {5, 11}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for(port: int, process: subprocess.Popen, log: Path, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(1)
    raise TimeoutError(f"nothing listens on port {port} after {seconds} s:\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def _serving(command: list[str], port: int, log: Path, **options):
    with open(log, "w") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, **options)
    try:
        _wait_for(port, process, log)
        yield
    finally:
        process.terminate()
        process.wait(timeout=30)


def _clip_env() -> dict:
    return dict(os.environ, PYTHONPATH=str(REPO / "src"), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Served pool images, a clip-retrieval index of their embeddings, and the back serving it."""
    root = tmp_path_factory.mktemp("clip_service")
    centres = np.eye(2, 64, dtype=np.float32)
    labels = np.repeat([0, 1], N_POOL // 2)
    # Image i has cosine similarity closeness[i] to its class's centre (the rest of it points in
    # a direction of its own), rising with its number: the last of a class is the best.
    closeness = np.tile(np.linspace(0.5, 0.95, N_POOL // 2), 2)
    own = np.eye(N_POOL, 64, k=2, dtype=np.float32)
    embeddings = closeness[:, None] * centres[labels] + np.sqrt(1 - closeness**2)[:, None] * own
    embeddings = embeddings.astype(np.float32)

    images = root / "www"
    images.mkdir()
    for i in range(N_POOL):
        if i not in MISSING:
            Image.new("RGB", (24, 20), (20 * i, 255 - 20 * i, 100)).save(images / f"img{i}.png")
    web_port, back_port = _free_port(), _free_port()
    urls = [f"http://127.0.0.1:{web_port}/img{i}.png" for i in range(N_POOL)]

    source = root / "embeddings"
    for folder in ("img_emb", "text_emb", "metadata"):
        (source / folder).mkdir(parents=True)
    np.save(source / "img_emb" / "img_emb_0.npy", embeddings)
    np.save(source / "text_emb" / "text_emb_0.npy", embeddings)
    metadata = pd.DataFrame({"url": urls, "caption": [f"pool image {i}" for i in range(N_POOL)]})
    metadata.to_csv(root / "metadata.csv", index=False)
    # Parquet, as clip-retrieval reads it, is written where pyarrow is: the clip venv.
    to_parquet = "import pandas, sys; pandas.read_csv(sys.argv[1]).to_parquet(sys.argv[2])"
    parquet = source / "metadata" / "metadata_0.parquet"
    subprocess.run([str(CLIP_PYTHON), "-c", to_parquet, root / "metadata.csv", parquet], check=True)
    index = root / "index"
    build = [str(CLIP_PYTHON.parent / "clip-retrieval"), "index", "--embeddings_folder", str(source)]
    build += ["--index_folder", str(index), "--max_index_memory_usage", "100M", "--current_memory_available", "1G"]
    subprocess.run(build + ["--nb_cores", "1"], check=True, capture_output=True, env=_clip_env())
    (root / "indices.json").write_text(json.dumps({"tiny": str(index)}))

    web = [sys.executable, "-m", "http.server", str(web_port), "--bind", "127.0.0.1", "--directory", str(images)]
    back = [str(CLIP_PYTHON), str(REPO / "tests" / "clip_back.py"), "--model", str(MODEL)]
    back += ["--indices", str(root / "indices.json"), "--port", str(back_port)]
    with (
        _serving(web, web_port, root / "web.log"),
        _serving(back, back_port, root / "back.log", env=_clip_env(), cwd=root),
    ):
        yield {
            "root": root,
            "url": f"http://127.0.0.1:{back_port}/knn-service",
            "centres": centres,
            "urls": urls,
            "labels": labels,
        }


def _task(world, name: str) -> Path:
    folder = world["root"] / name
    folder.mkdir()
    write_classes(folder / "classes.txt", ["zero", "one"])
    # Two real images per class: a quota of 2 each.
    subset = pd.DataFrame({"path": [str(world["root"] / "www" / f"img{i}.png") for i in (0, 1, 6, 7)]})
    write_manifest(folder / "subset.csv", subset.assign(label=[0, 0, 1, 1]))
    np.save(folder / "prompts.npy", world["centres"])
    return folder


def _run(module: str, *arguments: str) -> None:
    command = [str(CLIP_PYTHON), "-m", f"augbench.{module}", *arguments]
    done = subprocess.run(command, capture_output=True, text=True, env=_clip_env())
    assert done.returncode == 0, done.stdout + done.stderr


def _query(world, folder: Path, *options: str) -> pd.DataFrame:
    _run(
        "knn_service",
        *("--url", world["url"], "--indice-name", "tiny", "--subset", str(folder / "subset.csv")),
        *("--classes", str(folder / "classes.txt"), "--out", str(folder / "candidates.csv"), "--factor", "2"),
        *("--aesthetic-score", "9", "--aesthetic-weight", "0", "--deduplicate", "false"),
        *("--use-safety-model", "true", "--use-violence-detector", "true"),
        *options,
    )
    return read_manifest(folder / "candidates.csv")


def test_service_candidates_are_downloaded_screened_and_the_best_kept_per_class(world):
    folder = _task(world, "embedding_queries")
    candidates = _query(world, folder, "--embeddings", str(folder / "prompts.npy"))
    # A quota of 2 times a factor of 2: the 4 images nearest each class's query, best first.
    pool_label = dict(zip(world["urls"], world["labels"]))
    for label in (0, 1):
        mine = candidates[candidates.label == label]
        assert mine.url.tolist() == [world["urls"][i] for i in range(6 * label + 5, 6 * label + 1, -1)]
        assert all(pool_label[url] == label for url in mine.url)
        assert mine.score.is_monotonic_decreasing and mine.score.iloc[0] <= 1.0 + 1e-5

    _run(
        "download",
        *("--candidates", str(folder / "candidates.csv"), "--subset", str(folder / "subset.csv")),
        *("--classes", str(folder / "classes.txt"), "--images-dir", str(folder / "images")),
        *("--out", str(folder / "downloaded.csv"), "--failures", str(folder / "failures.csv"), "--timeout", "5"),
    )
    downloaded = read_manifest(folder / "downloaded.csv")
    # The best of each class (5, 11) is missing on the server; every other candidate arrived.
    assert downloaded.url.tolist() == [world["urls"][i] for i in (4, 3, 2, 10, 9, 8)]
    for path in downloaded.path:
        with Image.open(path) as image:
            assert image.size == (24, 20)
    failures = pd.read_csv(folder / "failures.csv")
    assert sorted(failures.url) == sorted(world["urls"][i] for i in MISSING)
    assert (failures.status == "failed_to_download").all()
    assert failures.error.str.contains("404").all()

    # Screening in the workflow's own venv: image 4, the best arrival of class 0, is a training
    # image, so its download gives way to the next (flat colours: only a copy scores 0.999).
    write_manifest(folder / "train.csv", pd.DataFrame({"path": [str(world["root"] / "www" / "img4.png")], "label": 0}))
    from augbench.embed import ImageEmbedding, embed_images

    embed_images(
        str(folder / "train.csv"), str(folder / "train.npy"), ImageEmbedding(f"local-dir:{MODEL}", num_workers=0)
    )
    command = [sys.executable, "-m", "augbench.screen_downloads", "--downloaded", str(folder / "downloaded.csv")]
    command += ["--subset", str(folder / "subset.csv"), "--classes", str(folder / "classes.txt")]
    command += ["--out", str(folder / "manifest.csv"), "--excluded", str(folder / "excluded.csv")]
    command += ["--model", f"local-dir:{MODEL}", "--train-manifest", str(folder / "train.csv")]
    command += ["--train-embeddings", str(folder / "train.npy"), "--train-threshold", "0.999"]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    excluded = pd.read_csv(folder / "excluded.csv")
    assert excluded.path.tolist() == [downloaded.path[0]] and excluded.matched.tolist() == [
        str(world["root"] / "www" / "img4.png")
    ]
    manifest = read_manifest(folder / "manifest.csv")
    assert manifest.url.tolist() == [world["urls"][i] for i in (3, 2, 10, 9)]
    assert manifest.label.tolist() == [0, 0, 1, 1]


def test_the_service_embeds_prompt_texts_and_image_files_itself(world):
    folder = _task(world, "service_embeds")
    by_text = _query(world, folder, "--query", "text", "--template", "a photo of a {}", "--modality", "image")
    assert by_text.groupby("label").size().tolist() == [4, 4]
    assert set(by_text.url) <= set(world["urls"]) and by_text.url.is_unique
    by_image = _query(world, folder, "--query", "image", "--modality", "text")
    assert by_image.groupby("label").size().tolist() == [4, 4]
    assert set(by_image["query"]) == {0, 1, 2, 3}
