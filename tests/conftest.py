"""Shared fixtures: a small mini-world and tiny foundation models, built once per test session
with the same modules the workflow runs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


# make test runs two pytest workers that take whole files (--dist loadfile): the smoke run is made once
# only if every test of make test that uses it is in this file.
SMOKE_RUN_FILE = "test_workflow.py"


def pytest_collection_modifyitems(items):
    strays = [
        item.nodeid
        for item in items
        if "smoke_run" in getattr(item, "fixturenames", ())
        and item.get_closest_marker("slow") is None
        and item.path.name != SMOKE_RUN_FILE
    ]
    if strays:
        raise pytest.UsageError(f"tests of the shared smoke run belong in tests/{SMOKE_RUN_FILE} or are slow: {strays}")
    # Its file first (make test keeps this order: --no-loadscope-reorder), so the smoke run, the
    # longest piece of work, starts at once on the first worker.
    items.sort(key=lambda item: item.path.name != SMOKE_RUN_FILE)


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    """Each test learns as a job of its own would (see helpers.as_a_new_job)."""
    import sys

    if "accelerate.state" in sys.modules:
        from helpers import as_a_new_job

        as_a_new_job()


@pytest.fixture(scope="session")
def miniworld(tmp_path_factory) -> Path:
    from augbench.miniworld import data as miniworld_data

    root = tmp_path_factory.mktemp("miniworld")
    miniworld_data.build(root, image_size=16, n_val_per_class=5, n_train_per_class=8, pool_copies=1, seed=0)
    return root


@pytest.fixture(scope="session")
def tiny_clip(miniworld, tmp_path_factory) -> str:
    """An open_clip folder, loadable as ``local-dir:<folder>``."""
    from augbench.miniworld import pretrain_clip

    out = tmp_path_factory.mktemp("models") / "clip"
    pretrain_clip.pretrain(str(miniworld / "pool" / "manifest.csv"), str(out), steps=3, batch_size=32, threads=2)
    return f"local-dir:{out}"


@pytest.fixture(scope="session")
def tiny_pipeline(miniworld, tiny_clip, tmp_path_factory) -> str:
    """A StableDiffusionPipeline folder, loadable with ``from_pretrained``."""
    from augbench.miniworld import pretrain_diffusion

    out = tmp_path_factory.mktemp("models") / "diffusion"
    clip_folder = tiny_clip.removeprefix("local-dir:")
    pool = str(miniworld / "pool" / "manifest.csv")
    pretrain_diffusion.pretrain(pool, clip_folder, str(out), vae_steps=2, unet_steps=2, batch_size=16, threads=2)
    return str(out)


@pytest.fixture(scope="session")
def family_pipelines(miniworld, tmp_path_factory) -> dict[str, str]:
    """Tiny random SDXL, SD3 and FLUX pipeline folders by backend name (``tests/tiny_pipelines.py``),
    loadable with ``from_pretrained``; their T5 tokenizers know the mini-world's class names."""
    import tiny_pipelines

    from augbench.files import read_classes

    words = ["a", "photo", "of", *read_classes(miniworld / "classes.txt")]
    root = tmp_path_factory.mktemp("families")
    return {name: str(build(root / name, words)) for name, build in tiny_pipelines.BUILDERS.items()}


# Set for the smoke run as a user would set their hub token; nothing may write it down.
HUB_TOKEN = "hf_augbenchTestTokenThatMustNeverBeWritten"


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """The whole DAG on the smoke config, run locally once per test session: (workdir, result)."""
    from helpers import snakemake

    workdir = tmp_path_factory.mktemp("smoke")
    # Three jobs at once on make test's two cores: the smoke run and the tests that read it are
    # the longest path of make test, and the unit tests' worker beside it has time to spare.
    return workdir, snakemake(workdir, "--cores", "3", env={"HF_TOKEN": HUB_TOKEN})


@pytest.fixture(scope="session")
def planned(tmp_path_factory):
    """planned(plan): what a dry run of a plan (test_presets.PLANS, or a preset) prints, made once a session."""
    from test_presets import dry_run_plan

    outputs = {}

    def output(plan: str) -> str:
        if plan not in outputs:
            outputs[plan] = dry_run_plan(tmp_path_factory.mktemp("plan"), plan)
        return outputs[plan]

    return output
