"""The profiles know every GPU rule: a SLURM profile sends it to its GPU partition, and
the local profile runs it on one thread (the rules' GPU counts come from augbench.study). And
`make profiles` installs them by name, so that `snakemake --profile slurm` works."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from augbench import profiles

from helpers import REPO


def gpu_rules() -> set[str]:
    """The rules that ask for GPUs, as the study gives them to the rules and the cost table."""
    from augbench.study import Study

    config = yaml.safe_load((REPO / "configs" / "smoke.yaml").read_text())
    return set(Study.gpus_of(config["classifier"]))


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


def test_the_local_profile_makes_every_methods_added_images_before_any_training():
    # Snakemake's --prioritize: the rules named and every job they need come first.
    prioritised = yaml.safe_load((REPO / "profiles" / "local" / "config.yaml").read_text())["prioritize"]
    writers = set()
    for rules in (REPO / "workflow" / "rules").glob("*.smk"):
        for block in re.split(r"^rule ", rules.read_text(), flags=re.M)[1:]:
            name, body = block.split(":", 1)
            output = re.search(r"^    output:\n(.*?)^    \w", body, flags=re.S | re.M)
            if output and "STUDY.added_manifest(" in output.group(1):
                writers.add(name)
    assert writers == set(prioritised)


# Installing the profiles by name (`make profiles`, augbench.profiles), so that
# `snakemake --profile slurm` works in the repository root.

SHIPPED = REPO / "profiles"
NAMES = {"local": "augbench-local", "slurm": "slurm", "slurm-gcp": "slurm-gcp"}


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A user's empty home; the profile folder follows it as Snakemake's does (no XDG_CONFIG_HOME)."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    return home


def test_the_profiles_go_to_the_folder_under_home_where_snakemake_looks_names_up(home, tmp_path, monkeypatch):
    from snakemake.cli import get_profile_dir

    outcomes = profiles.install()

    folder = profiles.user_profile_dir()
    assert folder.is_relative_to(home)
    if sys.platform.startswith("linux"):
        assert folder == home / ".config" / "snakemake"
    assert outcomes == {folder / name: "installed" for name in NAMES.values()}
    monkeypatch.chdir(tmp_path)  # Snakemake looks in the working directory first
    for shipped, name in NAMES.items():
        found_folder, found_file = get_profile_dir(name)
        assert found_folder == folder / name
        assert found_file.read_text() == (SHIPPED / shipped / "config.yaml").read_text()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="XDG_CONFIG_HOME is a Linux convention")
def test_xdg_config_home_is_honoured_as_snakemake_honours_it(home, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    profiles.install()
    assert sorted(path.name for path in (tmp_path / "xdg" / "snakemake").iterdir()) == sorted(NAMES.values())
    assert not (home / ".config").exists()


def test_installing_again_changes_nothing(home):
    profiles.install()
    installed = profiles.user_profile_dir() / "slurm" / "config.yaml"
    before = installed.stat().st_mtime_ns

    outcomes = profiles.install()

    assert set(outcomes.values()) == {"unchanged"}
    assert installed.stat().st_mtime_ns == before


def test_an_edited_profile_is_kept_and_the_refusal_says_where_and_how_to_replace_it(home):
    profiles.install()
    edited = profiles.user_profile_dir() / "slurm" / "config.yaml"
    edited.write_text(edited.read_text().replace("slurm_partition: gpu", "slurm_partition: a100"))
    (profiles.user_profile_dir() / "slurm-gcp").rename(profiles.user_profile_dir() / "old-gcp")

    with pytest.raises(profiles.ProfileConflict) as refusal:
        profiles.install()

    assert len(refusal.value.messages) == 1
    assert str(edited.parent) in refusal.value.messages[0] and "--force" in refusal.value.messages[0]
    assert "slurm_partition: a100" in edited.read_text()
    # The others are still installed.
    assert refusal.value.outcomes == {
        profiles.user_profile_dir() / "augbench-local": "unchanged",
        profiles.user_profile_dir() / "slurm-gcp": "installed",
    }

    assert profiles.install(force=True)[edited.parent] == "replaced"
    assert edited.read_text() == (SHIPPED / "slurm" / "config.yaml").read_text()


def test_the_command_line_reports_a_refusal_on_one_line_and_fails(home, capsys):
    assert profiles.main(["install"]) == 0
    (profiles.user_profile_dir() / "augbench-local" / "config.yaml").write_text("cores: 1\n")

    assert profiles.main(["install"]) == 1
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1 and "augbench-local" in errors[0] and "--force" in errors[0]
    assert profiles.main(["install", "--force"]) == 0


def _jobs(dry_run_output: str, rule: str) -> list[str]:
    """The blocks a dry run prints for each job of ``rule``."""
    return [block for block in dry_run_output.split("\nrule ")[1:] if block.startswith(f"{rule}:")]


@pytest.mark.e2e
def test_make_profiles_lets_snakemake_plan_the_demo_by_profile_name(tmp_path):
    env = {key: value for key, value in os.environ.items() if key not in ("XDG_CONFIG_HOME", "SNAKEMAKE_PROFILE")}
    env |= {
        "HOME": str(tmp_path),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")])),
    }
    # -o: the target's venv stamp counts as made, so the test never reinstalls the venv it runs in.
    make = ["make", "-o", ".venv/.installed", "profiles", f"PYTHON={sys.executable}"]
    installed = subprocess.run(make, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert (tmp_path / ".config" / "snakemake" / "slurm" / "config.yaml").is_file()

    def dry_run(profile: str) -> str:
        # --forceall: the whole demo is planned even where a checkout holds its results already.
        command = [sys.executable, "-m", "snakemake", "--profile", profile, "-n", "--forceall", "--printshellcmds"]
        result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
        return result.stdout + result.stderr

    local = dry_run("augbench-local")
    trainings = _jobs(local, "train")
    assert len(trainings) >= 2
    assert all("--threads 1 " in job for job in trainings)  # the local profile's set-threads

    # No SLURM here: a dry run plans the jobs and submits none.
    slurm = dry_run("slurm")
    trainings = _jobs(slurm, "train")
    assert len(trainings) >= 2
    assert all("slurm_partition=gpu" in job for job in trainings)  # the GPU rules go to the GPU partition
