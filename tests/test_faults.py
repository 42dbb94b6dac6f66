"""End to end under faults: a run killed and resumed, a second run, broken input files."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from PIL import Image

from helpers import REPO, SHIPPED_MODELS, SMOKE, snakemake, snakemake_command

pytestmark = pytest.mark.e2e

# Real images, a retrieval and a generation: pool embedding, generation and training all run.
KILLED_METHODS = ["baseline", "retrieve_text", "gen_classname"]
# (what is running when the run is killed, the folder of its job logs)
KILL_POINTS = [
    ("pool embedding", "embed/pool_images"),
    ("generation", "generate/gen_classname"),
    # A generated method's training: its generation finished first, whatever order the rest ran in.
    ("training", "train/gen_classname"),
]


def _metrics_targets(methods: list[str]) -> list[str]:
    return [f"results/smoke/metrics/{method}/seed0.json" for method in methods]


def _kill_when_running(workdir: Path, targets: list[str], log_folder: str, transcript: Path) -> str:
    """Start the workflow, SIGKILL it and all its jobs once a job logs to ``log_folder``; return its output."""
    command, env = snakemake_command(workdir, *targets)
    folder = workdir / "logs" / "smoke" / log_folder
    started = time.time()
    with open(transcript, "w") as out:
        run = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 300
        while not any(log.stat().st_mtime >= started for log in folder.rglob("*.log")):
            if run.poll() is not None or time.monotonic() > deadline:
                os.killpg(run.pid, signal.SIGKILL)
                tail = transcript.read_text()[-3000:]
                raise AssertionError(f"no job logged to {folder} before the run ended:\n{tail}")
            time.sleep(0.1)
        time.sleep(1.0)  # the job is under way
        os.killpg(run.pid, signal.SIGKILL)  # Snakemake and every job it started, at once
        run.wait()
    return transcript.read_text()


def _jobs(output: str) -> dict[int, list[str]]:
    """Job id -> output files, of every job a Snakemake run started (rules and checkpoints, such as
    the merge of the pool shards' candidates)."""
    jobs = {}
    for block in re.split(r"\n(?=(?:local)?(?:rule|checkpoint) \w+:)", output):
        outputs = re.search(r"^\s+output: (.+)$", block, re.M)
        jobid = re.search(r"^\s+jobid: (\d+)$", block, re.M)
        if outputs and jobid:
            jobs[int(jobid.group(1))] = outputs.group(1).split(", ")
    return jobs


def _finished_outputs(output: str) -> list[str]:
    started = _jobs(output)
    finished = {int(jobid) for jobid in re.findall(r"Finished jobid: (\d+)", output)}
    return [path for jobid in finished for path in started[jobid]]


def _stamps(workdir: Path, outputs: list[str]) -> dict[str, tuple[int, int]]:
    """(mtime, inode) of each file of the outputs (a folder output counts with all its files)."""
    stamps = {}
    for output in outputs:
        path = workdir / output
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        assert files, f"{output} of a finished job is missing"
        for file in files:
            stamps[str(file)] = (file.stat().st_mtime_ns, file.stat().st_ino)
    return stamps


def _same_results(workdir: Path, reference: Path, methods: list[str]) -> None:
    """Subset, added images and metrics equal a reference run's."""
    results, expected = workdir / "results" / "smoke", reference / "results" / "smoke"
    for table in ["subset/train.csv", *[f"added/{m}/manifest.csv" for m in methods if m != "baseline"]]:
        pd.testing.assert_frame_equal(pd.read_csv(results / table), pd.read_csv(expected / table), obj=table)
    for method in methods:
        got = json.loads((results / "metrics" / method / "seed0.json").read_text())
        want = json.loads((expected / "metrics" / method / "seed0.json").read_text())
        assert got == want, method


@pytest.mark.slow
def test_a_run_killed_at_several_points_resumes_without_redoing_finished_jobs(smoke_run, tmp_path):
    reference, _ = smoke_run
    workdir = tmp_path / "run"
    targets = _metrics_targets(KILLED_METHODS)
    finished: set[str] = set()  # outputs of the jobs that finished before a kill
    stamps: dict[str, tuple[int, int]] = {}
    for attempt, (stage, log_folder) in enumerate(KILL_POINTS):
        output = _kill_when_running(workdir, targets, log_folder, tmp_path / f"killed{attempt}.txt")
        started = {path for outputs in _jobs(output).values() for path in outputs}
        assert not started & finished, f"the run killed during {stage} redid finished jobs: {started & finished}"
        finished |= set(_finished_outputs(output))
        stamps.update(_stamps(workdir, _finished_outputs(output)))
        # As after a crash: the lock the killed run left is lifted by hand.
        snakemake(workdir, "--unlock", *targets)
    final = snakemake(workdir, *targets)
    started = {path for outputs in _jobs(final.stdout + final.stderr).values() for path in outputs}
    assert not started & finished, f"the last run redid finished jobs: {started & finished}"
    for path, stamp in stamps.items():
        assert (Path(path).stat().st_mtime_ns, Path(path).stat().st_ino) == stamp, f"{path} was rewritten"
    # Each kill came after more jobs had finished, and jobs were left for the last run.
    assert len(finished) > 10 and started
    _same_results(workdir, reference, KILLED_METHODS)


@pytest.mark.slow
def test_a_second_run_of_the_same_config_gives_identical_subsets_retrievals_and_metrics(smoke_run, tmp_path):
    reference, _ = smoke_run
    methods = ["baseline", "retrieve_text", "retrieve_image"]
    snakemake(tmp_path, *_metrics_targets(methods))
    _same_results(tmp_path, reference, methods)


def _plant(folder: Path, manifest: pd.DataFrame, label: int) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Add one file of every troublesome kind to a manifest; return it, the unreadable and the convertible paths."""
    folder.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 64), (200, 10, 10)).save(folder / "full.jpg")
    (folder / "truncated.jpg").write_bytes((folder / "full.jpg").read_bytes()[:300])
    (folder / "zero.png").write_bytes(b"")
    (folder / "text.jpg").write_text("<html>not an image</html>")
    Image.new("CMYK", (16, 16), (0, 200, 200, 0)).save(folder / "cmyk.jpg")
    Image.new("I;16", (16, 16), 40000).save(folder / "grey16.png")
    Image.new("L", (16, 16), 90).save(folder / "grey.png")
    palette = Image.new("P", (16, 16), 1)
    palette.putpalette([0, 0, 0, 255, 255, 255] * 128)
    palette.info["transparency"] = 0
    palette.save(folder / "palette.png")
    Image.new("RGB", (20000, 16), (5, 5, 5)).save(folder / "huge.png")
    unreadable = [str(folder / name) for name in ("truncated.jpg", "zero.png", "text.jpg")]
    convertible = [str(folder / name) for name in ("cmyk.jpg", "grey16.png", "grey.png", "palette.png", "huge.png")]
    planted = pd.DataFrame({"path": unreadable + convertible, "label": label})
    # Other columns (a pool's caption) are copied from the first row.
    planted = planted.assign(**{column: manifest[column].iloc[0] for column in manifest if column not in planted})
    return pd.concat([manifest, planted], ignore_index=True), unreadable, convertible


@pytest.mark.slow
def test_broken_files_in_dataset_and_pool_are_converted_or_skipped_and_counted(smoke_run, tmp_path):
    reference, _ = smoke_run
    world = reference / "resources" / "miniworld-smoke"
    train, val, pool = (
        pd.read_csv(world / split / "manifest.csv", keep_default_na=False) for split in ("train", "val", "pool")
    )
    for frame in (train, val, pool):
        frame["path"] = [str(reference / path) for path in frame.path]
    # Class 0 keeps 3 of its good training images; with the 5 convertible ones planted beside
    # them it has exactly the 8 readable images the subset draws, so the draw meets every planted file.
    train = train.drop(train.index[train.label == 0][3:])
    train, bad_train, ok_train = _plant(tmp_path / "planted" / "train", train, label=0)
    val, bad_val, _ = _plant(tmp_path / "planted" / "val", val, label=1)
    pool, bad_pool, ok_pool = _plant(tmp_path / "planted" / "pool", pool, label=-1)
    for name, frame in (("train", train), ("val", val), ("pool", pool)):
        frame.to_csv(tmp_path / f"{name}.csv", index=False)
    config = yaml.safe_load(SMOKE.read_text())
    config.update(
        miniworld={"enabled": False},
        dataset={
            "classes": str(world / "classes.txt"),
            "train": str(tmp_path / "train.csv"),
            "val": str(tmp_path / "val.csv"),
        },
        evaluation_sets={},  # the smoke config's is the mini-world's
        pool={"manifest": str(tmp_path / "pool.csv"), "shards": 2},
        subset={"per_class": 8, "seed": 0},
        methods={"baseline": {"kind": "real"}, "retrieve_caption": {"kind": "retrieve", "index": "caption"}},
    )
    models = REPO / SHIPPED_MODELS  # the ones the smoke run used
    config["clip"]["model"] = f"local-dir:{models / 'clip'}"
    config["diffusion"]["model"] = str(models / "diffusion")
    (tmp_path / "broken.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(tmp_path / "run", configfile=tmp_path / "broken.yaml")

    results = tmp_path / "run" / "results" / "smoke"
    skipped = pd.read_csv(results / "unreadable.csv")
    for stage, planted in (("subset draw", bad_train), ("validation", bad_val), ("pool", bad_pool)):
        assert sorted(skipped[skipped.stage == stage].path) == sorted(planted), stage
    assert skipped.reason.str.contains("cannot be read").all()
    summary = (results / "summary.md").read_text()
    for stage in ("subset draw", "validation", "pool"):
        assert f"| {stage} | 3 |" in summary
    assert "9 unreadable image(s) were skipped" in result.stdout + result.stderr  # printed at the end too
    # The convertible files are trained on; nothing unreadable reaches training or retrieval.
    subset = pd.read_csv(results / "subset" / "train.csv")
    assert set(ok_train) <= set(subset.path) and set(subset.path).isdisjoint(bad_train)
    added = pd.read_csv(results / "added" / "retrieve_caption" / "manifest.csv")
    assert set(added.path).isdisjoint(bad_pool)
    metrics = json.loads((results / "metrics" / "baseline" / "seed0.json").read_text())
    assert metrics["n_val_images"] == len(val) - len(bad_val)
    # The convertible pool files are the very pictures planted among the validation images:
    # the contamination filter leaves them out of retrieval and the summary counts them.
    excluded = pd.read_csv(results / "excluded.csv")
    assert set(ok_pool) <= set(excluded[excluded.reason == "evaluation duplicate"].path)
    assert set(added.path).isdisjoint(excluded.path)
    assert "| evaluation duplicate |" in summary
