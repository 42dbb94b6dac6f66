"""The cost model of benchmarks/README.md: GPU hours of a preset from measured throughputs."""

from __future__ import annotations

import json
import sys

import pytest

from helpers import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import cost_model  # noqa: E402

SPEEDS = {"train": 1000.0, "generate": 10.0, "personalise": 20.0, "lora": 40.0, "embed": 500.0}


def test_dry_run_jobs_are_counted_per_method():
    output = """rule generate:
    output: x
    wildcards: method=gen_a, shard=0
rule generate:
    wildcards: method=gen_a, shard=1
localrule collect_generated:
    wildcards: method=gen_a
rule embed_pool:
    wildcards: shard=0
localrule all:
    input: y
"""
    jobs = cost_model.jobs_per_method(output)
    assert jobs == {"gen_a": {"generate": 2, "collect_generated": 1}, cost_model.SHARED: {"embed_pool": 1}}


def test_hours_follow_images_over_throughput():
    config = cost_model.resolved_config(str(REPO / "configs" / "imagenet10.yaml"))
    hours = cost_model.method_hours(config, SPEEDS, train_images=100_000, val_images=3_600)
    real = 10_000  # 10% of 100,000
    # 3 seeds x 90 epochs over the real images at 1,000 images/s
    assert hours["baseline"]["train"] == pytest.approx(3 * 90 * real / 1000 / 3600)
    assert hours["baseline"]["evaluate"] == pytest.approx(3 * 3_600 / 1000 / 3600)
    assert hours["real_upper_bound"]["train"] == pytest.approx(2 * hours["baseline"]["train"])
    assert "generate" not in hours["retrieve_text"]
    assert hours["gen_classname"]["generate"] == pytest.approx(real / 10 / 3600)
    # image variations run half the steps (strength 0.5); unconditional generates twice the
    # images (half kept) without guidance (one UNet pass per step)
    assert hours["gen_img2img"]["generate"] == pytest.approx(hours["gen_classname"]["generate"] / 2)
    assert hours["gen_unconditional"]["generate"] == pytest.approx(hours["gen_classname"]["generate"])
    # per-class targets: 1,000 classes x 1,000 steps x 4 images; LoRA: 20,000 steps x 16 images
    assert hours["gen_textual_inversion"]["personalise"] == pytest.approx(1000 * 1000 * 4 / 20 / 3600)
    assert hours["gen_dm_finetune"]["personalise"] == pytest.approx(20_000 * 16 / 40 / 3600)


def test_the_table_of_a_preset_has_its_dry_run_jobs(tmp_path, capsys):
    figures = {
        "device": "Planted card",
        "smoke": False,
        "train_resnet50_224px_amp_images_per_s": 1000,
        "gen_sd15_512px_batch16_images_per_s": 10,
        "personalise_sd15_512px_conditioning_images_per_s": 20,
        "personalise_sd15_512px_lora_images_per_s": 40,
        "embed_ViT_L_14_images_per_s": 500,
    }
    (tmp_path / "gpu.json").write_text(json.dumps(figures))
    cost_model.main(["--gpu", str(tmp_path / "gpu.json"), "--config", str(REPO / "configs" / "imagenet10.yaml")])
    table = capsys.readouterr().out
    assert "GPU hours on one Planted card" in table
    row = next(line for line in table.splitlines() if line.startswith("| `gen_classname`"))
    assert "16 generate" in row and "3 train" in row and "3 evaluate" in row
    shared = next(line for line in table.splitlines() if line.startswith("| shared"))
    assert "64 embed_pool," in shared and "64 embed_pool_captions," in shared


def test_smoke_figures_are_refused(tmp_path):
    (tmp_path / "gpu.json").write_text(json.dumps({"smoke": True}))
    with pytest.raises(SystemExit):
        cost_model.main(["--gpu", str(tmp_path / "gpu.json")])
