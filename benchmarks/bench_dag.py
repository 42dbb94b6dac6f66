"""Dry-run time of the ImageNet-1k preset (every method, 3 seeds) against a bare Snakefile
with the same jobs and edges: what the workflow's own logic adds to Snakemake's.

The bare Snakefile is the preset's DAG itself (from ``snakemake --dag``), one trivial
rule whose inputs reproduce each job's dependencies.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PRESET = REPO / "configs" / "imagenet10.yaml"
REPEATS = 5

BARE = """import json
DEPS = json.load(open("deps.json"))

rule all:
    input: [f"out/{i}" for i in DEPS["sinks"]]

rule job:
    input: lambda wildcards: [f"out/{j}" for j in DEPS["deps"][wildcards.i]]
    output: "out/{i}"
    shell: "touch {output}"
"""


def _snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    command = [sys.executable, "-m", "snakemake", "--directory", str(workdir), *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, check=True)


def _timed(workdir: Path, *args: str) -> float:
    start = time.perf_counter()
    _snakemake(workdir, *args)
    return time.perf_counter() - start


def _graph(dot: str) -> tuple[list[str], list[tuple[str, str]]]:
    nodes = re.findall(r"^\s*(\d+)\[", dot, re.M)
    edges = re.findall(r"^\s*(\d+) -> (\d+)", dot, re.M)
    return nodes, edges


def measure() -> dict:
    from augbench.stub import make_stub

    with tempfile.TemporaryDirectory() as tmp:
        work, bare = Path(tmp) / "preset", Path(tmp) / "bare"
        work.mkdir()
        bare.mkdir()
        make_stub(str(PRESET), str(work))
        (work / "resources").symlink_to(REPO / "resources")
        preset = ["--snakefile", str(REPO / "Snakefile"), "--configfile", str(PRESET)]
        nodes, edges = _graph(_snakemake(work, *preset, "--dag").stdout)
        # In the dot graph an edge runs from a job to the job that needs it.
        deps: dict[str, list[str]] = {node: [] for node in nodes}
        for source, target in edges:
            deps[target].append(source)
        needed = {source for source, _ in edges}
        (bare / "deps.json").write_text(json.dumps({"deps": deps, "sinks": [n for n in nodes if n not in needed]}))
        (bare / "Snakefile").write_text(BARE)
        bare_args = ["--snakefile", str(bare / "Snakefile"), "-n", "-q", "all"]
        preset_times, bare_times = [], []
        for _ in range(REPEATS):  # interleaved, so both see the same machine
            preset_times.append(_timed(work, *preset, "-n", "-q", "all"))
            bare_times.append(_timed(bare, *bare_args))
    seconds, bare_seconds = statistics.median(preset_times), statistics.median(bare_times)
    print(f"   preset {preset_times}, bare {bare_times}")
    return {
        "dag_jobs": len(nodes),
        "dag_edges": len(edges),
        "dag_dryrun_seconds": seconds,
        "dag_bare_dryrun_seconds": bare_seconds,
        "dag_ratio_vs_bare": seconds / bare_seconds,
    }
