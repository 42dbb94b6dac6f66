"""The profiles know every GPU rule: a SLURM profile sends it to its GPU partition, and
the local profile runs it on one thread (the rules' GPU counts live in common.smk)."""

from __future__ import annotations

import re

import pytest
import yaml

from helpers import REPO


def gpu_rules() -> set[str]:
    common = (REPO / "workflow" / "rules" / "common.smk").read_text()
    block = re.search(r"^GPUS = \{(.*?)^\}", common, re.S | re.M).group(1)
    return set(re.findall(r'^\s+"(\w+)":', block, re.M))


def test_the_gpu_rules_are_found():
    assert {"embed_pool", "generate", "train"} <= gpu_rules()


@pytest.mark.parametrize("profile", ["slurm", "slurm-gcp"])
def test_a_slurm_profile_sends_every_gpu_rule_to_its_gpu_partition(profile):
    config = yaml.safe_load((REPO / "profiles" / profile / "config.yaml").read_text())
    resources, threads = config["set-resources"], config["set-threads"]
    gpu_partition = resources["train"]["slurm_partition"]
    for rule in gpu_rules():
        assert resources.get(rule, {}).get("slurm_partition") == gpu_partition, rule
        assert rule in threads, rule


def test_the_local_profile_runs_every_gpu_rule_on_one_thread():
    threads = yaml.safe_load((REPO / "profiles" / "local" / "config.yaml").read_text())["set-threads"]
    assert {rule: threads.get(rule) for rule in gpu_rules() if not rule.startswith("pretrain")} == {
        rule: 1 for rule in gpu_rules() if not rule.startswith("pretrain")
    }
