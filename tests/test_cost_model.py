"""The cost model of benchmarks/README.md: GPU hours of a preset from measured throughputs."""

from __future__ import annotations

import json
import sys

import pytest

from helpers import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import cost_model  # noqa: E402

SPEEDS = {"train": 1000.0, "generate": 10.0, "generate_side": 512.0, "personalise": 20.0, "lora": 40.0, "embed": 500.0}
# gpu.py's figures, as its JSON names them.
GPU = {
    "train_resnet50_224px_amp_images_per_s": 1000,
    "gen_sd15_512px_batch16_images_per_s": 10,
    "personalise_sd15_512px_conditioning_images_per_s": 20,
    "personalise_sd15_512px_lora_images_per_s": 40,
    "embed_ViT_L_14_images_per_s": 500,
    **{"gen_sdxl_1024px_batch4_images_per_s": 2.0, "gen_sdxl_steps": 10, "gen_sdxl_passes": 2},
    **{"gen_sd3_1024px_batch4_images_per_s": 1.0, "gen_sd3_steps": 10, "gen_sd3_passes": 2},
    **{"gen_flux_1024px_batch4_images_per_s": 0.5, "gen_flux_steps": 4, "gen_flux_passes": 1},
}


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


def test_each_generator_is_costed_from_its_own_backend_rate():
    config = cost_model.resolved_config(str(REPO / "configs" / "imagenet10-generators.yaml"))
    hours = cost_model.method_hours(config, cost_model.throughputs(GPU), train_images=100_000, val_images=3_600)
    real = 10_000
    # SD 1.4: its steps over the measured 25; SDXL: 30 of the measured 10; SD3.5: 40 of 10; FLUX
    # schnell: its 4 measured steps, one pass each (no guidance), as measured.
    sd_steps = config["methods"]["gen_classname"]["steps"]
    assert hours["gen_classname"]["generate"] == pytest.approx(real * sd_steps / 25 / 10 / 3600)
    # SD 2.1 at its 768 px: (768 / 512)^2 the latent positions of the measured SD 1.5 at 512 px.
    assert hours["gen_classname_sd21"]["generate"] == pytest.approx(2.25 * hours["gen_classname"]["generate"])
    # Its LoRA steps too, at 768 px against the measured 512 px.
    assert hours["gen_dm_finetune_sd21"]["personalise"] == pytest.approx(2.25 * hours["gen_dm_finetune"]["personalise"])
    assert hours["gen_classname_sdxl"]["generate"] == pytest.approx(real * 30 / 10 / 2.0 / 3600)
    assert hours["gen_classname_sd35"]["generate"] == pytest.approx(real * 40 / 10 / 1.0 / 3600)
    assert hours["gen_classname_flux"]["generate"] == pytest.approx(real / 0.5 / 3600)
    assert hours["gen_img2img_flux"]["generate"] == pytest.approx(hours["gen_classname_flux"]["generate"] / 2)
    # A LoRA step of a later family costs SD 1.5's times its denoiser's cost a pass and latent
    # position against SD 1.5's (from the generation rates), at its native 1024 px (4x 512 px).
    # SDXL: 2 images/s of 10 steps x 2 passes x 1024^2 against 10 of 25 x 2 x 512^2: 3.125.
    lora = hours["gen_dm_finetune"]["personalise"]
    assert hours["gen_dm_finetune_sdxl"]["personalise"] == pytest.approx(3.125 * 4 * lora)
    assert hours["gen_dm_finetune_sd35"]["personalise"] == pytest.approx(6.25 * 4 * lora)
    assert hours["gen_dm_finetune_flux"]["personalise"] == pytest.approx(62.5 * 4 * lora)


def test_an_image_side_other_than_the_measured_one_scales_the_generation_cost():
    speed = cost_model.throughputs(GPU)
    assert cost_model.generation_rate(speed, "sdxl")[3] == 1024 and cost_model.generation_rate(speed, "sd")[3] == 512
    config = {"diffusion": {"image_size": None}}
    assert cost_model.size_factor(config, {}, 1024) == 1  # native: as measured
    assert cost_model.size_factor(config, {"diffusion": {"image_size": 512}}, 1024) == 0.25
    assert cost_model.size_factor({"diffusion": {"image_size": 768}}, {}, 512) == 2.25


def test_a_denoiser_is_costed_against_sd15_a_pass_and_latent_position():
    speed = cost_model.throughputs(GPU)
    assert cost_model.denoiser_factor(speed, "sd") == 1
    # Twice SD's rate at the same steps, passes and side: half the cost.
    faster = {**speed, "generate_sdxl": 20.0, "generate_sdxl_steps": 25.0, "generate_sdxl_side": 512.0}
    assert cost_model.denoiser_factor(faster, "sdxl") == pytest.approx(0.5)
    # An image_size given is the side personalisation runs at, whatever the backend's native one.
    method = {"diffusion": {"image_size": 512}}
    assert cost_model.personalisation_factor({"diffusion": {}}, method, faster, "sdxl") == pytest.approx(0.5)
    assert cost_model.personalisation_factor({"diffusion": {}}, {}, speed, "sdxl") == pytest.approx(12.5)


def test_a_backend_without_a_measured_rate_is_named():
    config = cost_model.resolved_config(str(REPO / "configs" / "imagenet10-generators.yaml"))
    with pytest.raises(ValueError, match="no generation rate of backend 'sdxl'"):
        cost_model.method_hours(config, SPEEDS, train_images=100_000, val_images=3_600)


def test_a_flux_method_under_true_guidance_costs_two_passes_a_step():
    method = {"guidance_scale": 3.5, "true_cfg_scale": 4.0}
    assert cost_model.passes_per_step("flux", method) == 2
    assert cost_model.passes_per_step("flux", {**method, "true_cfg_scale": None}) == 1
    assert cost_model.passes_per_step("sdxl", {"guidance_scale": 1.0}) == 1


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


# -- A pool in shards, on paper (cost_model.py pool) --------------------------------------------

# Round rates, so that each figure below can be checked by hand.
POOL_RATES = {
    "index_core_s_per_1m_rows": 100.0,
    "flat_pairs_per_core_s": 1e8,
    "ivf_pairs_per_core_s": 1e7,
    "job_start_s": 36.0,
    "embed_images_per_gpu_s": 1000.0,
    "embed_captions_per_gpu_s": 4000.0,
    "manifest_bytes_per_row": 300.0,
    "metadata_bytes_per_row": 150.0,
    "listing_rows_per_s": 10_000.0,
    "listing_process_efficiency": 0.75,
    "listing_table_rows_per_s": 1e6,
}


def _plan(preset: str, rows: int, **pool):
    config = cost_model.resolved_config(str(REPO / "configs" / preset))
    config["pool"].update(pool)
    # 1,000,000 training images: a subset of 100,000 (10%), 100 a class; 50,000 validation images
    stages, disk = cost_model.pool_plan(config, rows, POOL_RATES, train_images=1_000_000, val_images=50_000)
    return {stage["stage"]: stage for stage in stages}, disk


def test_a_pool_in_shards_is_planned_from_its_rates():
    # Re-LAION's preset: 2,048 shards of 1,000,000 rows, 16 a job, ViT-L/14 (768 wide)
    stages, disk = _plan("imagenet10-relaion.yaml", 2_048_000_000)
    per_method = [name for name in stages if name.startswith("merge")]
    assert {stage["jobs"] for name, stage in stages.items() if name not in per_method + ["table of listings"]} == {128}
    assert disk["index"] == "IVF1024,SQfp16" and disk["shard_rows"] == 1_000_000
    # 2.048e9 images at 1,000 a second on the GPU; float32 vectors of 768
    assert stages["embed images"]["gpu_hours"] == pytest.approx(2.048e9 / 1000 / 3600)
    assert stages["embed images"]["disk_gb"] == pytest.approx(2.048e9 * 768 * 4 / 1e9)
    # an embedding job holds its block of 16 shards' float32 vectors, in chunks and joined
    assert stages["embed images"]["memory_gb"] == pytest.approx(2 * 16 * 1e6 * 768 * 4 / 1e9)
    assert disk["embeddings_fp16_gb"] == pytest.approx(2 * 2.048e9 * 768 * 2 / 1e9)  # images and captions
    start = 128 * 36 / 3600  # every job's start-up
    # screening: every pool row against 50,000 validation and 100,000 subset images, exact
    assert stages["screen"]["cpu_hours"] == pytest.approx(2.048e9 * 150_000 / 1e8 / 3600 + start)
    # text search per shard: an index build of 100 s, and 1,000 queries x 10 of 1,024 lists of 1M rows
    text = stages["search retrieve_text"]
    assert text["cpu_hours"] == pytest.approx(2048 * (100 + 1000 * 10 * 1e6 / 1024 / 1e7) / 3600 + start)
    # 100 a class, overfetch 2: a first depth of 200, round 0 four times that; 29 bytes a candidate
    assert text["disk_gb"] == pytest.approx(128 * 1000 * 800 * 29 / 1e9)
    # one shard's index in memory: fp16 codes and 8-byte ids, 1,024 float32 centroids
    assert disk["index_per_shard_gb"] == pytest.approx((1e6 * (2 * 768 + 8) + 1024 * 768 * 4) / 1e9)
    # each job reads the listing of its block of tars alone: 16 shards' rows
    assert text["manifest_gb"] == pytest.approx(16e6 * 300 * 2 / 1e9)
    # in one job, one listing of every tar: the job reads it whole
    one, _ = _plan("imagenet10-relaion.yaml", 2_048_000_000, shards_per_job=2048)
    assert one["search retrieve_text"]["manifest_gb"] == pytest.approx(2.048e9 * 300 * 2 / 1e9)
    assert stages["search retrieve_image"]["note"].startswith("100,000 queries, depth 8")
    # the tars listed a block per job at 10,000 rows a second, then one job hashes every key
    assert stages["list tars"]["cpu_hours"] == pytest.approx(2.048e9 / 10_000 / 3600 + start)
    # 8 processes a job at three quarters of 8 times one process's rate
    assert stages["list tars"]["wall_hours_per_job"] == pytest.approx(stages["list tars"]["cpu_hours"] / 6 / 128)
    assert stages["list tars"]["memory_gb"] == pytest.approx(16e6 * 300 * 2 / 1e9)
    table = stages["table of listings"]
    assert table["jobs"] == 1 and table["cpu_hours"] == pytest.approx((36 + 2.048e9 / 1e6) / 3600)
    # every row's hash and a batch of 1M keys at a time: more than the rule's least, 8 GB
    assert table["memory_gb"] == pytest.approx(0.5 + (2.048e9 * 9 + 1e6 * 350) / 1e9, abs=1e-3)
    # precomputed parts need no listing
    datacomp, _ = _plan("imagenet10-datacomp.yaml", 1_024_000_000)
    assert "list tars" not in datacomp and "table of listings" not in datacomp


def test_a_job_holds_one_shard_whatever_the_shards_per_job():
    few, _ = _plan("imagenet10-datacomp.yaml", 1_024_000_000, shards=1024, shards_per_job=8)
    many, _ = _plan("imagenet10-datacomp.yaml", 1_024_000_000, shards=1024, shards_per_job=32)
    assert few["search retrieve_text"]["jobs"] == 4 * many["search retrieve_text"]["jobs"] == 128
    assert few["search retrieve_text"]["memory_gb"] == many["search retrieve_text"]["memory_gb"]
    assert few["search retrieve_text"]["cpu_hours"] > many["search retrieve_text"]["cpu_hours"]  # more start-ups
    # DataComp ships its embeddings and metadata per part: nothing is embedded, a job reads one part at a time
    assert not any(name.startswith("embed") for name in few)
    assert few["screen"]["manifest_gb"] == pytest.approx(1_000_000 * 300 * 2 / 1e9)
    smaller, _ = _plan("imagenet10-datacomp.yaml", 1_024_000_000, shards=4096, shards_per_job=32)
    assert smaller["search retrieve_text"]["memory_gb"] < few["search retrieve_text"]["memory_gb"] / 2


def test_the_pool_plan_prints_a_table_with_its_sources(capsys):
    cost_model.main(["pool", "--config", str(REPO / "configs" / "imagenet10-datacomp.yaml"), "--rows", "1.4e9"])
    out = capsys.readouterr().out
    assert "| screen | 128 |" in out and "| search retrieve_image | 128 |" in out
    assert "search_build_seconds" in out and "embed_images_per_gpu_s = 1,000: assumed" in out


def test_gpu_figures_give_the_search_and_screening_gpu_hours():
    figures = {
        "device": "Planted card",
        "embed_ViT_L_14_images_per_s": 2000,
        "search_faiss_gpus": 1,
        "search_vectors": 1_000_000,
        "search_flat_1k_queries_seconds": 1.0,  # 1e9 exact inner products a second
        "search_shard_index": "IVF1024,SQfp16",
        "search_shard_nprobe": 10,
        "search_shard_gpus": 1,
        "search_shard_depth": 1024,
        "search_shard_1k_queries_seconds": 0.01,  # 1,000 x 10 lists of 1M / 1,024 rows in 0.01 s
    }
    rates = POOL_RATES | {name: value for name, (value, _) in cost_model.gpu_rates(figures).items()}
    config = cost_model.resolved_config(str(REPO / "configs" / "imagenet10-relaion.yaml"))
    stages, _ = cost_model.pool_plan(config, 2_048_000_000, rates, train_images=1_000_000, val_images=50_000)
    stages = {stage["stage"]: stage for stage in stages}
    assert stages["embed images"]["gpu_hours"] == pytest.approx(2.048e9 / 2000 / 3600)
    assert stages["screen"]["gpu_hours"] == pytest.approx(2.048e9 * 150_000 / 1e9 / 3600)
    per_shard = 1000 * 10 * 1e6 / 1024  # inner products of a text search of one shard
    assert stages["search retrieve_text"]["gpu_hours"] == pytest.approx(2048 * per_shard / (per_shard / 0.01) / 3600)
