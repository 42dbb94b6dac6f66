"""The smoke config through profiles/slurm on a real single-node SLURM (tests/slurm/single_node.sh).

The profile is used as shipped except for what a 2-CPU test node cannot give (CPUs per
GPU job) and what a cluster without accounting needs (no account, squeue for status).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from augbench import train

from helpers import REPO, SMOKE, checkpoint_epoch, snakemake, snakemake_command

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.slurm]

SCRIPT = REPO / "tests" / "slurm" / "single_node.sh"
# A real rule, a retrieval and a personalised generation: every kind of job, CPU and GPU.
METHODS = ["baseline", "retrieve_text", "gen_cluster_conditioning"]
# Retrieval screens the pool against the subset's and validation images' embeddings (embed_subset, embed_val).
GPU_RULES = {"embed_pool", "embed_subset", "embed_val"} | {
    "personalise",
    "generate",
    "train",
    # faiss's rules: the pool's screening and each shard's search
    "screen_pool",
    "search_pool_shard",
}


@pytest.fixture(scope="module")
def cluster():
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip("starting a test SLURM needs root and Debian's packages")
    subprocess.run([str(SCRIPT), "start"], check=True, capture_output=True, text=True)
    yield
    subprocess.run([str(SCRIPT), "stop"], check=True)


def _test_profile(folder: Path) -> Path:
    """profiles/slurm as shipped, bar what the 2-CPU test node cannot give and what a cluster
    without accounting needs."""
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    # The test node has 2 CPUs; jobs get the threads the local run gave them, so numbers can match.
    for resources in profile["set-resources"].values():
        resources["cpus_per_gpu"] = 1
    profile["set-threads"] = yaml.safe_load((REPO / "profiles" / "local" / "config.yaml").read_text())["set-threads"]
    profile.update(
        {
            "slurm-no-account": True,
            "slurm-status-command": "squeue",
            "slurm-init-seconds-before-status-checks": 2,
            # Jobs of seconds: the default 10 s between status checks would be most of the test's time.
            "seconds-between-status-checks": 2,
            "slurm-keep-successful-logs": True,
            "latency-wait": 5,
            # No job may ask for more CPUs than the test node has: SLURM would hold it forever.
            "max-threads": 2,
        }
    )
    (folder / "profile").mkdir()
    (folder / "profile" / "config.yaml").write_text(yaml.safe_dump(profile))
    return folder / "profile"


def test_profile_sends_gpu_rules_to_the_gpu_partition_and_results_match_a_local_run(cluster, smoke_run, tmp_path):
    workdir = tmp_path / "run"
    targets = [f"results/smoke/metrics/{method}/seed0.json" for method in METHODS]
    # A job SLURM cannot place waits forever; the budget for this test is 10 minutes.
    result = snakemake(workdir, *targets, profile=_test_profile(tmp_path), timeout=900)
    output = result.stdout + result.stderr

    # Every job went through SLURM: each has a SLURM job id and a SLURM log.
    logs = sorted((workdir / ".snakemake" / "slurm_logs").glob("rule_*/**/*.log"))
    jobs = {int(path.stem): path.relative_to(workdir / ".snakemake" / "slurm_logs").parts[0] for path in logs}
    assert len(jobs) >= 10, output[-3000:]
    assert "SLURM jobid" in output or "SLURM run ID" in output
    rules = {re.sub(r"_wildcards_.*", "", folder.removeprefix("rule_")) for folder in jobs.values()}
    # (retrieve itself is a local rule: it copies the merge of the pool shards' candidates)
    assert {"miniworld_data", "subset", "merge_pool_shards", "evaluate"} | GPU_RULES <= rules

    # GPU rules asked SLURM for a GPU on the gpu partition; the others stayed on cpu without one.
    for job_id, folder in jobs.items():
        rule = re.sub(r"_wildcards_.*", "", folder.removeprefix("rule_"))
        details = subprocess.run(
            ["scontrol", "show", "job", str(job_id)], capture_output=True, text=True, check=True
        ).stdout
        partition = re.search(r"Partition=(\S+)", details).group(1)
        asks_gpu = "gres:gpu:1" in details
        assert (partition, asks_gpu) == (("gpu", True) if rule in GPU_RULES else ("cpu", False)), (rule, details)

    # The same numbers as the local run of the same config.
    local_dir, _ = smoke_run
    for target in targets:
        on_slurm = json.loads((workdir / target).read_text())
        local = json.loads((local_dir / target).read_text())
        assert on_slurm["top1"] == local["top1"] and on_slurm["per_class_top1"] == local["per_class_top1"], target


def test_a_training_job_slurm_requeues_resumes_from_its_checkpoint_and_finishes(cluster, smoke_run, tmp_path):
    # The smoke run's finished inputs, copied with their times, so only the training runs on SLURM.
    local_dir, _ = smoke_run
    workdir = tmp_path / "run"
    shutil.copytree(local_dir, workdir, symlinks=True, ignore=shutil.ignore_patterns("locks", "incomplete"))
    # Long enough (about 0.3 s an epoch here) that the requeue lands mid-run; a checkpoint each epoch.
    config = yaml.safe_load(SMOKE.read_text())
    config["classifier"].update({"epochs": 80, "checkpoint_minutes": 0})
    configfile = tmp_path / "config.yaml"
    configfile.write_text(yaml.safe_dump(config))
    target = "results/smoke/models/baseline/seed0.safetensors"
    checkpoint = train.checkpoint_dir(workdir / target)
    command, env = snakemake_command(workdir, target, profile=_test_profile(tmp_path), configfile=configfile)
    transcript = tmp_path / "snakemake.txt"
    with open(transcript, "w") as handle:
        run = subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + 300
            while checkpoint_epoch(checkpoint) < 3 and run.poll() is None and time.time() < deadline:
                time.sleep(0.2)
            running = subprocess.run(
                ["squeue", "--noheader", "--states=RUNNING", "--format=%i"], capture_output=True, text=True, check=True
            ).stdout.split()
            assert len(running) == 1, (running, transcript.read_text()[-3000:])
            requeued_at = checkpoint_epoch(checkpoint)
            # What SLURM does to a preempted job on a requeue partition: kill it and queue it again.
            subprocess.run(["scontrol", "requeue", running[0]], check=True)
            # A requeued job waits for a begin time; on this idle node it may start at once.
            time.sleep(1)
            subprocess.run(["scontrol", "update", f"JobId={running[0]}", "StartTime=now"], check=False)
            assert run.wait(timeout=600) == 0, transcript.read_text()[-4000:]
        finally:
            if run.poll() is None:
                run.kill()
    details = subprocess.run(["scontrol", "show", "job", running[0]], capture_output=True, text=True).stdout
    assert "Restarts=1" in details, details
    record = json.loads((workdir / target).with_suffix(".json").read_text())
    # The second start went on from the checkpoint the first left, not from epoch 0.
    assert 3 <= requeued_at < 80 and record["resumed_after_epoch"] >= requeued_at, (requeued_at, record)
    assert record["recipe"]["epochs"] == 80 and not checkpoint.exists()
