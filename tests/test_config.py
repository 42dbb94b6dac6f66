"""A broken config stops the workflow before any job runs, with a message naming the key.

The checks are augbench.study's: most tests build the study directly (in the folder a run
would start in); a few dry runs check that Snakemake stops on them the same way.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from augbench import study

from helpers import with_shipped_models

REPO = Path(__file__).resolve().parents[1]
SMOKE = yaml.safe_load((REPO / "configs" / "smoke.yaml").read_text())
# The cases below check every personalisation target: the smoke run keeps a method for each path
# through the workflow, the registry has the rest (gen_textual_inversion, gen_dm_finetune, ...).
SMOKE["methods"] = {**yaml.safe_load((REPO / "configs" / "methods.yaml").read_text()), **SMOKE["methods"]}


def dry_run(tmp_path: Path, config: dict, *args: str) -> subprocess.CompletedProcess:
    with_shipped_models(tmp_path)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    command = [sys.executable, "-m", "snakemake", "-n", "--snakefile", str(REPO / "Snakefile")]
    command += ["--directory", str(tmp_path), "--configfile", str(path), "--cores", "1", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True)


def read(config: dict, folder: Path, monkeypatch) -> study.Study:
    """The study of a config, read in ``folder`` as a run started there reads it."""
    monkeypatch.chdir(with_shipped_models(folder))
    return study.Study(copy.deepcopy(config))


def broken(edit):
    config = copy.deepcopy(SMOKE)
    edit(config)
    return config


def pretraining(config: dict) -> dict:
    """``config`` with the mini-world's pre-training on, training its models into its root."""
    config["miniworld"]["pretrain"] = True
    config["clip"]["model"] = "local-dir:resources/miniworld-smoke/models/clip"
    config["diffusion"]["model"] = "resources/miniworld-smoke/models/diffusion"
    return config


CASES = {
    "unknown method kind": (
        lambda c: c["methods"]["baseline"].update(kind="bogus"),
        ["config methods.baseline.kind: 'bogus' is not one of ['real', 'retrieve', 'generate']"],
    ),
    "wrong type": (
        lambda c: c["methods"]["gen_classname"].update(steps="many"),
        ["config methods.gen_classname.steps: 'many' is not of type 'integer'"],
    ),
    "negative count": (
        lambda c: c["subset"].update(per_class=-2),
        ["config subset.per_class: -2 is less than the minimum of 1"],
    ),
    "unknown key": (
        lambda c: c["classifier"].update(epohcs=3),
        ["config classifier: Additional properties are not allowed ('epohcs' was unexpected)"],
    ),
    "empty seed list": (lambda c: c.update(seeds=[]), ["config seeds: [] should be non-empty"]),
    "unknown scheduler": (
        lambda c: c["methods"]["gen_classname"].update(scheduler="fast"),
        [
            "config methods.gen_classname.scheduler: 'fast' is not one of "
            "['ddim', 'dpm_solver', 'euler', 'pndm', 'flow_euler']"
        ],
    ),
    "both subset sizes": (lambda c: c["subset"].update(fraction=0.1), ["subset.per_class and subset.fraction"]),
    "data outside the mini-world": (
        lambda c: c["dataset"].update(val="elsewhere/val.csv"),
        ["config dataset.val: elsewhere/val.csv is not under miniworld.root"],
    ),
    "template without placeholder": (
        lambda c: c.update(prompt_template="a photo"),
        ["config prompt_template: 'a photo' does not match"],
    ),
    "missing model without pre-training": (
        lambda c: c["clip"].update(model="local-dir:resources/miniworld-smoke/models/clip"),
        ["config clip.model: resources/miniworld-smoke/models/clip does not exist; set miniworld.pretrain: true"],
    ),
    "missing classifier weights file": (
        lambda c: c["classifier"].update(init_weights="weights/resnet18.pth"),
        ["config classifier.init_weights: weights/resnet18.pth is not a file"],
    ),
    "missing dataset folder": (
        lambda c: c.update(
            miniworld={"enabled": False},
            dataset={"classes": str(REPO / "resources/imagenet/classes.tsv"), "train": "/nowhere/imagenet/train"},
        ),
        ["config dataset.train: /nowhere/imagenet/train does not exist"],
    ),
    "missing local model": (
        lambda c: c.update(
            miniworld={"enabled": False},
            dataset={"classes": str(REPO / "resources/imagenet/classes.tsv"), "train": str(REPO), "val": str(REPO)},
            evaluation_sets={},  # the smoke config's is the mini-world's
            pool={"manifest": str(REPO / "README.md")},
            clip={"model": "local-dir:/nowhere/clip"},
        ),
        ["config clip.model: /nowhere/clip does not exist"],
    ),
    "strength outside (0, 1]": (
        lambda c: c["methods"]["gen_img2img"].update(strength=1.5),
        ["config methods.gen_img2img.strength: 1.5 is greater than the maximum of 1"],
    ),
    "empty prompt without zero-shot labels": (
        lambda c: c["methods"]["gen_unconditional"].update(zero_shot_keep=None),
        ["config methods.gen_unconditional.zero_shot_keep: an empty prompt gives images no class"],
    ),
    "unknown personalisation target": (
        lambda c: c["methods"]["gen_textual_inversion"]["personalise"].update(target="lora"),
        [
            "config methods.gen_textual_inversion.personalise.target: "
            "'lora' is not one of ['token', 'conditioning', 'unet', 'token_unet']"
        ],
    ),
    "clusters of tokens": (
        lambda c: c["methods"]["gen_textual_inversion"]["personalise"].update(clusters=3),
        ["config methods.gen_textual_inversion.personalise.clusters: clusters apply to target 'conditioning'"],
    ),
    "shards of one UNet": (
        lambda c: c["methods"]["gen_dm_finetune"]["personalise"].update(shards=4),
        ["config methods.gen_dm_finetune.personalise.shards: target 'unet' learns one UNet"],
    ),
    "CLIP score threshold outside [-1, 1]": (
        lambda c: c["methods"]["retrieve_text"].update(min_clip_score=1.5),
        ["config methods.retrieve_text.min_clip_score: 1.5 is greater than the maximum of 1"],
    ),
    "missing CLIP score thresholds file": (
        lambda c: c["methods"]["gen_classname"].update(min_clip_score_file="nowhere.tsv"),
        ["config methods.gen_classname.min_clip_score_file: nowhere.tsv does not exist"],
    ),
    "CLIP score filter with zero-shot labels": (
        lambda c: c["methods"]["gen_unconditional"].update(min_clip_score=0.2),
        ["config methods.gen_unconditional.min_clip_score: cannot go with zero_shot_keep"],
    ),
    "negative regeneration rounds": (
        lambda c: c["methods"]["gen_classname"].update(min_clip_score=0.2, regenerate_rounds=-1),
        ["config methods.gen_classname.regenerate_rounds: -1 is less than the minimum of 0"],
    ),
    "pre-training at a size CLIP cannot patch": (
        lambda c: pretraining(c)["miniworld"].update(image_size=18),
        ["config miniworld.image_size: pre-training needs a multiple of 4"],
    ),
    "pre-training deeper models at a size their blocks cannot halve": (
        lambda c: pretraining(c)["miniworld"].update(image_size=20, diffusion={"vae_channels": [32, 32, 64]}),
        ["config miniworld.image_size: pre-training needs a multiple of 8", "halve the side 3 times), not 20"],
    ),
    "pre-training widths the normalisation groups cannot split": (
        lambda c: pretraining(c)["miniworld"].update(diffusion={"unet_channels": [16, 40]}),
        ["config miniworld.diffusion: channel widths [40] are not multiples of 16"],
    ),
    "pre-training a hub CLIP": (
        lambda c: pretraining(c)["clip"].update(model="ViT-B-32"),
        ["config clip.model: with miniworld.pretrain the workflow trains CLIP into a folder"],
    ),
    "zero micro-batch": (
        lambda c: c["methods"]["gen_dm_finetune"]["personalise"].update(micro_batch=0),
        ["config methods.gen_dm_finetune.personalise.micro_batch: 0 is less than the minimum of 1"],
    ),
    "zero vectors per token": (
        lambda c: c["methods"]["gen_textual_inversion"]["personalise"].update(vectors=0),
        ["config methods.gen_textual_inversion.personalise.vectors: 0 is less than the minimum of 1"],
    ),
    "split beside a separate val": (
        lambda c: c["dataset"].update(split={"train_per_class": 5}),
        ["config dataset.val: with dataset.split the validation images are the rest of dataset.train"],
    ),
    "split of the mini-world": (
        lambda c: c["dataset"].update(split={"train_per_class": 5}, val=None),
        ["config dataset.split: the mini-world makes its own training and validation sets"],
    ),
    "no validation images": (
        lambda c: c["dataset"].update(val=None),
        ["config dataset.val: give the validation images, or dataset.split"],
    ),
    "no training images per class": (
        lambda c: c["dataset"].update(split={"train_per_class": 0}, val=None),
        ["config dataset.split.train_per_class: 0 is less than the minimum of 1"],
    ),
    "unknown split key": (
        lambda c: c["dataset"].update(split={"train": 30}, val=None),
        ["config dataset.split: Additional properties are not allowed ('train' was unexpected)"],
    ),
    "file list beside per_class": (
        lambda c: c["subset"].update(file_list="configs/smoke.yaml"),
        ["config subset: set exactly one of subset.per_class and subset.fraction (or neither, with subset.file_list)"],
    ),
    "missing file list": (
        lambda c: c["subset"].update(per_class=None, file_list="nowhere/10percent.txt"),
        ["config subset.file_list: nowhere/10percent.txt does not exist"],
    ),
    "contamination threshold above 1": (
        lambda c: c.update(contamination={"eval_threshold": 1.5}),
        ["config contamination.eval_threshold: 1.5 is greater than the maximum of 1"],
    ),
    "contamination threshold of zero": (
        lambda c: c.update(contamination={"train_threshold": 0}),
        ["config contamination.train_threshold: 0 is less than or equal to the minimum of 0"],
    ),
    "contamination threshold neither a number nor auto": (
        lambda c: c.update(contamination={"eval_threshold": "automatic"}),
        ["config contamination.eval_threshold: 'automatic' does not match '^auto$'"],
    ),
    "catch share of calibrated thresholds of zero": (
        lambda c: c.update(contamination={"eval_threshold": "auto", "catch_share": 0}),
        ["config contamination.catch_share: 0 is less than or equal to the minimum of 0"],
    ),
    "catch share of calibrated thresholds above 1": (
        lambda c: c.update(contamination={"catch_share": 1.5}),
        ["config contamination.catch_share: 1.5 is greater than the maximum of 1"],
    ),
    "no images to calibrate a threshold on": (
        lambda c: c.update(contamination={"train_threshold": "auto", "calibration_images": 0}),
        ["config contamination.calibration_images: 0 is less than the minimum of 1"],
    ),
    "a kind of copy the calibration does not plant": (
        lambda c: c.update(contamination={"copy_transforms": ["jpeg", "blurred"]}),
        ["config contamination.copy_transforms.1: 'blurred' is not one of ['jpeg', 'shrunk', 'enlarged', 'cropped']"],
    ),
    "safety values not a list": (
        lambda c: c["pool"].update(drop_safety_values="NSFW"),
        ["config pool.drop_safety_values: 'NSFW' is not of type 'array'"],
    ),
    "a UNet scheduler on a flow-matching model": (
        lambda c: c["diffusion"].update(backend="sd3"),
        [
            "config methods.gen_classname.scheduler: 'dpm_solver' cannot sample backend 'sd3', which is trained by "
            "flow matching; use one of ['flow_euler']"
        ],
    ),
    "no guidance on FLUX": (
        lambda c: (
            c["diffusion"].update(backend="flux"),
            c["methods"].update(
                gen_unconditional={"kind": "generate", "prompt": "empty", "guidance_scale": 1.0, "zero_shot_keep": 0.5}
            ),
            [entry.update(scheduler="flow_euler") for entry in c["methods"].values() if entry["kind"] == "generate"],
        ),
        ["config methods.gen_unconditional.guidance_scale: on backend 'flux' guidance_scale is an input of the"],
    ),
    "true classifier-free guidance on a family guided by guidance_scale": (
        lambda c: (c["diffusion"].update(backend="sd"), c["methods"]["gen_classname"].update(true_cfg_scale=3.0)),
        [
            "config methods.gen_classname.true_cfg_scale: on backend 'sd' guidance_scale is classifier-free guidance "
            "already; true_cfg_scale is for ['flux']"
        ],
    ),
    "true classifier-free guidance below 1": (
        lambda c: c["methods"]["gen_classname"].update(true_cfg_scale=0.5),
        ["config methods.gen_classname.true_cfg_scale: 0.5 is less than the minimum of 1"],
    ),
    "evaluation set outside the mini-world": (
        lambda c: c["evaluation_sets"].update(web={"images": "data/web/manifest.csv"}),
        ["config evaluation_sets.web.images: data/web/manifest.csv is not under miniworld.root"],
    ),
    "evaluation set without images": (
        lambda c: c["evaluation_sets"].update(web={"classes": "resources/miniworld-smoke/classes.txt"}),
        ["config evaluation_sets.web: 'images' is a required property"],
    ),
    "evaluation set named as no column can be": (
        lambda c: c["evaluation_sets"].update({"Web-R": {"images": "resources/miniworld-smoke/val/manifest.csv"}}),
        ["config evaluation_sets: 'Web-R' does not match"],
    ),
    "missing class list of an evaluation set": (
        lambda c: c["evaluation_sets"]["web"].update(classes="resources/nowhere.tsv"),
        ["config evaluation_sets.web.classes: resources/nowhere.tsv does not exist"],
    ),
    "the old name of pool.shards": (
        lambda c: c["pool"].update(embed_shards=4),
        ["config pool.embed_shards was renamed pool.shards", "write pool.shards: 4"],
    ),
    "kNN service without its URL": (
        lambda c: c["methods"]["retrieve_text"].update(backend="clip_service"),
        ["config methods.retrieve_text.service.url: backend clip_service needs the service's kNN endpoint"],
    ),
    "kNN service with a CLIP-score filter": (
        lambda c: c["methods"]["retrieve_text"].update(
            backend="clip_service", service={"url": "http://127.0.0.1:1/knn-service"}, min_clip_score=0.2
        ),
        ["config methods.retrieve_text.min_clip_score: the CLIP-score filter scores the pool's embeddings here"],
    ),
    "kNN service results not downloaded": (
        lambda c: c["methods"]["retrieve_text"].update(
            backend="clip_service", service={"url": "http://127.0.0.1:1/knn-service"}, download={"enabled": False}
        ),
        ["config methods.retrieve_text.download.enabled: a kNN service returns URLs"],
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_broken_config_is_refused_with_the_key_named(case, tmp_path, monkeypatch):
    edit, expected = CASES[case]
    with pytest.raises(study.ConfigError) as refused:
        read(broken(edit), tmp_path, monkeypatch)
    message = str(refused.value)
    assert "\n" not in message  # one line that names the key
    for text in expected:
        assert text in message, message


def test_the_backend_is_read_from_the_pipeline_folder_the_config_names(tmp_path, monkeypatch):
    folder = tmp_path / "flux"
    folder.mkdir()
    (folder / "model_index.json").write_text('{"_class_name": "FluxPipeline"}')
    config = broken(lambda c: c["diffusion"].update(model=str(folder)))
    with pytest.raises(study.ConfigError, match="gen_classname.scheduler: 'dpm_solver' cannot sample backend 'flux'"):
        read(config, tmp_path, monkeypatch)
    (folder / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    assert read(config, tmp_path, monkeypatch).diffusion_backend == "sd"


def test_a_broken_config_stops_snakemake_before_any_job(tmp_path):
    result = dry_run(tmp_path, broken(CASES["clusters of tokens"][0]))
    assert result.returncode != 0
    lines = (result.stdout + result.stderr).splitlines()
    assert any(CASES["clusters of tokens"][1][0] in line for line in lines), lines[-20:]
    assert not (tmp_path / "results").exists()


def test_smoke_config_is_valid_and_fills_defaults(tmp_path, monkeypatch):
    smoke = read(SMOKE, tmp_path, monkeypatch)
    assert smoke.methods["retrieve_text"]["overfetch"] == 2.0  # a schema default, filled in
    assert smoke.config["classifier"]["processes"] == 1
    result = dry_run(tmp_path, SMOKE)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "retrieve" in result.stdout + result.stderr


def test_a_service_method_is_queried_then_downloaded(tmp_path):
    config = broken(
        lambda c: c["methods"]["retrieve_text"].update(
            backend="clip_service", service={"url": "http://127.0.0.1:1/knn-service"}
        )
    )
    result = dry_run(tmp_path, config)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "retrieve_service" in result.stdout and "rule download:" in result.stdout
    # Its downloads are screened for copies before each class keeps its quota.
    screen = result.stdout[result.stdout.index("rule screen_downloads:") :].split("\n\n")[0]
    assert "results/smoke/added/retrieve_text/manifest.csv" in screen
    assert "results/smoke/embed/val_images.npy" in screen and "results/smoke/embed/subset_images.npy" in screen


def test_an_auto_threshold_is_calibrated_once_and_read_by_every_screening(tmp_path, monkeypatch):
    """eval_threshold auto: one calibration job on the validation images, whose JSON the pool's
    shards and a service method's downloads are screened with and the summary reports; the
    training check keeps its number."""
    config = broken(
        lambda c: (
            c.update(contamination={"eval_threshold": "auto", "train_threshold": 0.9, "calibration_images": 50}),
            c["methods"].update(
                retrieve_service={
                    "kind": "retrieve",
                    "backend": "clip_service",
                    "service": {"url": "http://127.0.0.1:1/knn-service"},
                }
            ),
        )
    )
    calibration = "results/smoke/contamination/eval_threshold.json"
    smoke = read(config, tmp_path, monkeypatch)
    assert smoke.calibrated_checks() == ["eval"] and smoke.copy_thresholds() == {"train_threshold": 0.9}
    assert smoke.copy_references()["eval_calibration"] == calibration
    result = dry_run(tmp_path, config, "-p")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("rule calibrate_copy_threshold:") == 1
    calibrate = re.search(r"python -m augbench.copy_calibration .*", result.stdout).group(0)
    assert "--manifest results/smoke/data/val_readable.csv --embeddings results/smoke/embed/val_images.npy" in calibrate
    assert f"--out {calibration}" in calibrate
    assert "--catch-share 0.99 --images 50 --transforms jpeg,shrunk,enlarged,cropped" in calibrate
    screens = re.findall(r"python -m augbench.(?:exclude|screen_downloads) .*", result.stdout)
    assert len(screens) == smoke.pool_jobs + 1
    for command in screens:
        assert f"--eval-calibration {calibration}" in command and "--eval-threshold" not in command
        assert "--train-threshold 0.9 " in command
    summary = re.search(r"python -m augbench.aggregate .*", result.stdout).group(0)
    assert f"--copy-calibration eval={calibration}" in summary and "--copy-threshold train=0.9" in summary

    # Nothing screened (no retrieval), nothing calibrated.
    config["methods"] = {"baseline": {"kind": "real"}}
    assert read(config, tmp_path, monkeypatch).calibrated_checks() == []


def test_diagnostics_enter_the_summary_and_figures_when_enabled(tmp_path):
    config = broken(lambda c: c.update(diagnostics={"enabled": "true"}))  # as --config hands it over
    result = dry_run(tmp_path, config, "-p")
    assert result.returncode == 0, result.stderr[-2000:]
    adding = [name for name, params in SMOKE["methods"].items() if name != "baseline"]
    for rule in ("embed_added", "diagnose_added"):
        assert result.stdout.count(f"rule {rule}:") == len(adding)
    for module in ("aggregate", "figures"):
        command = re.search(rf"python -m augbench.{module} .*", result.stdout).group(0)
        assert "--diagnostics results/smoke/diagnostics.csv" in command
    assert "results/smoke/gain_correlation.csv" in result.stdout
    assert "results/smoke/figures/gain_vs_diagnostics" in result.stdout
    assert "--enabled" not in result.stdout


def test_a_method_given_twice_is_refused_with_its_line(tmp_path):
    text = (REPO / "configs" / "smoke.yaml").read_text()
    # A second gen_img2img entry, as a copy-paste leaves it; YAML would keep only the last.
    second = "  gen_img2img:\n    kind: generate\n"
    text = text.replace("  gen_cluster_conditioning:", f"{second}  gen_cluster_conditioning:")
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(study.ConfigError) as refused:
        study.check_duplicate_keys([str(path)])
    line = text.splitlines().index("  gen_img2img:", text.splitlines().index("  gen_img2img:") + 1) + 1
    assert f"line {line}: key 'gen_img2img' is given twice" in str(refused.value)
    # Snakemake reads the config files the same way before it plans anything.
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    command = [sys.executable, "-m", "snakemake", "-n", "--snakefile", str(REPO / "Snakefile")]
    command += ["--directory", str(tmp_path), "--configfile", str(path), "--cores", "1"]
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    assert result.returncode != 0 and f"line {line}: key 'gen_img2img' is given twice" in result.stdout + result.stderr


def test_methods_built_from_yaml_anchors_may_override_merged_keys_but_not_repeat_their_own(tmp_path):
    """As configs/imagenet10-generators.yaml builds its sweep: a method merged with a model's settings."""
    path = tmp_path / "config.yaml"
    text = "methods:\n  a: &a {kind: generate, steps: 4}\n  b:\n    <<: *a\n    steps: 8\n"
    path.write_text(text)
    study.check_duplicate_keys([str(path)])  # steps from the merge, overridden: plain YAML
    path.write_text(text + "    steps: 9\n")
    with pytest.raises(study.ConfigError, match="line 6: key 'steps' is given twice"):
        study.check_duplicate_keys([str(path)])


def test_a_method_can_add_its_own_number_of_images_per_class(tmp_path, monkeypatch):
    config = copy.deepcopy(SMOKE)
    config["methods"]["retrieve_text_5"] = {"kind": "retrieve", "per_class": 5}
    smoke = read(config, tmp_path, monkeypatch)
    assert "--per-class 5" in study.cli_options(smoke.retrieval_options("retrieve_text_5"))
    assert "--per-class" not in study.cli_options(smoke.retrieval_options("retrieve_text"))  # 1:1, the default


def test_personalisation_memory_settings_reach_the_job(tmp_path, monkeypatch):
    config = copy.deepcopy(SMOKE)
    config["methods"]["gen_dm_finetune"]["personalise"].update(
        micro_batch=2, precision="bfloat16", gradient_checkpointing=True
    )
    smoke = read(config, tmp_path, monkeypatch)
    changed = study.cli_options(smoke.personalisation_options("gen_dm_finetune"))
    for flag in ("--micro-batch 2", "--precision bfloat16", "--gradient-checkpointing true"):
        assert flag in changed
    # At their defaults they stay off the command line, so runs made before them are not redone.
    default = study.cli_options(smoke.personalisation_options("gen_conditioning_ft"))
    for flag in ("--micro-batch", "--precision", "--gradient-checkpointing"):
        assert flag not in default


def test_a_generation_method_runs_its_own_diffusion_settings(tmp_path, monkeypatch):
    config = copy.deepcopy(SMOKE)
    own = {"model": "stabilityai/stable-diffusion-xl-base-1.0", "revision": "abc", "backend": "sdxl"}
    own |= {"dtype": "bfloat16", "image_size": 64, "text_length": None}
    config["methods"]["gen_textual_inversion"]["diffusion"] = own
    smoke = read(config, tmp_path, monkeypatch)
    generation = smoke.generation_options("gen_textual_inversion")
    assert {key: generation[key] for key in own} == own
    assert generation["batch_size"] == SMOKE["diffusion"]["batch_size"]  # a key it leaves out is diffusion's
    learning = smoke.personalisation_options("gen_textual_inversion")
    assert {key: learning[key] for key in ("model", "revision", "backend", "image_size")} == {
        key: own[key] for key in ("model", "revision", "backend", "image_size")
    }
    # The other methods keep the experiment's model, a local folder that their jobs read as input.
    others = [smoke.generation_options("gen_classname"), smoke.personalisation_options("gen_conditioning_ft")]
    assert {options["model"] for options in others} == {SMOKE["diffusion"]["model"]}
    assert all(options["backend"] is None and options["image_size"] is None for options in others)
    assert smoke.diffusion_files("gen_classname") == [SMOKE["diffusion"]["model"]]
    assert smoke.diffusion_files("gen_textual_inversion") == []  # a hub id: its jobs fetch it


def test_each_method_is_checked_against_its_own_model_family(tmp_path, monkeypatch):
    config = copy.deepcopy(SMOKE)
    config["methods"]["gen_flux"] = {"kind": "generate", "diffusion": {"model": "org/flux-like", "backend": "flux"}}
    with pytest.raises(
        study.ConfigError, match="config methods.gen_flux.scheduler: 'dpm_solver' cannot sample backend"
    ):
        read(config, tmp_path, monkeypatch)
    config["methods"]["gen_flux"]["scheduler"] = "flow_euler"
    smoke = read(config, tmp_path, monkeypatch)
    assert smoke.diffusion_backend_of("gen_flux") == "flux"
    # The experiment's own model is not flux: flow_euler on it is refused for the methods that use it.
    config["methods"]["gen_classname"]["scheduler"] = "flow_euler"
    config["diffusion"]["backend"] = "sd"
    with pytest.raises(study.ConfigError, match="config methods.gen_classname.scheduler: 'flow_euler' cannot sample"):
        read(config, tmp_path, monkeypatch)
    # A pipeline folder of a method's own names its family in its model_index.json.
    folder = tmp_path / "sd3"
    folder.mkdir()
    (folder / "model_index.json").write_text('{"_class_name": "StableDiffusion3Pipeline"}')
    config = copy.deepcopy(SMOKE)
    config["methods"]["gen_sd3"] = {"kind": "generate", "diffusion": {"model": str(folder)}}
    with pytest.raises(
        study.ConfigError, match="config methods.gen_sd3.scheduler: 'dpm_solver' cannot sample backend 'sd3'"
    ):
        read(config, tmp_path, monkeypatch)


def test_a_method_model_of_unknown_family_is_refused_naming_method_and_key(tmp_path, monkeypatch):
    config = copy.deepcopy(SMOKE)
    config["methods"]["gen_other"] = {"kind": "generate", "diffusion": {"model": "example-org/never-downloaded"}}
    with pytest.raises(study.ConfigError) as refused:
        read(config, tmp_path, monkeypatch)
    assert str(refused.value).startswith(
        "config methods.gen_other.diffusion.backend: the family of methods.gen_other.diffusion.model "
        "'example-org/never-downloaded' cannot be read offline"
    )
    assert "['sd', 'sdxl', 'sd3', 'flux']" in str(refused.value)
    # A folder of a method's own that is not there is named as missing.
    config = real_world(tmp_path)
    config["methods"]["gen_classname"]["diffusion"] = {"model": "./models/nowhere"}
    with pytest.raises(study.ConfigError, match="config methods.gen_classname.diffusion.model: ./models/nowhere does"):
        read(config, tmp_path, monkeypatch)


def real_world(tmp_path: Path, **changes) -> dict:
    """The smoke config turned to a world of real names: ImageNet's classes, a pool manifest, hub models."""
    pool = tmp_path / "pool.csv"
    pool.write_text("path,label,caption\nimages/0.jpg,-1,a cat\n")
    config = copy.deepcopy(SMOKE)
    config.update(
        miniworld={"enabled": False},
        dataset={"classes": str(REPO / "resources/imagenet/classes.tsv"), "train": str(REPO), "val": str(REPO)},
        evaluation_sets={},  # the smoke config's is the mini-world's
        pool={"manifest": str(pool)},
        clip={"model": "ViT-L-14", "pretrained": "laion2b_s32b_b82k"},
        diffusion={"model": "CompVis/stable-diffusion-v1-4"},
    )
    for section, values in changes.items():
        config[section].update(values)
    return config


def test_a_safety_column_the_pool_lacks_is_refused_with_the_key_named(tmp_path, monkeypatch):
    config = real_world(tmp_path, pool={"safety_column": "NSFW"})
    with pytest.raises(study.ConfigError, match="config pool.safety_column: 'NSFW' is not a column of"):
        read(config, tmp_path, monkeypatch)
    # Without a name, a pool without LAION's column is fine.
    del config["pool"]["safety_column"]
    read(config, tmp_path, monkeypatch)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"classifier": {"arch": "resnet5000"}}, "config classifier.arch: 'resnet5000' is neither a torchvision model"),
        ({"clip": {"model": "ViT-L-41"}}, "config clip.model: 'ViT-L-41' is not an open_clip model"),
        (
            {"clip": {"pretrained": "laion9b"}},
            "config clip.pretrained: 'laion9b' is neither a pretrained tag of ViT-L-14",
        ),
    ],
)
def test_a_name_no_library_knows_is_refused_before_any_job(changes, message, tmp_path, monkeypatch):
    """A typo in a model name would otherwise pass planning and fail only in the jobs that load
    it, after the embedding, personalisation and generation jobs before them have run."""
    with pytest.raises(study.ConfigError, match=message):
        read(real_world(tmp_path, **changes), tmp_path, monkeypatch)
    read(real_world(tmp_path), tmp_path, monkeypatch)  # the names as given are known


def test_the_library_names_are_kept_per_version(tmp_path):
    cache = tmp_path / "names.json"
    names = study.library_names(cache)
    assert "resnet50" in names["classifiers"] and "ViT-L-14" in names["clip_models"]
    assert study.library_names(cache) == names and cache.is_file()
    stale = {**names, "versions": {"torchvision": "0.0"}, "classifiers": []}
    cache.write_text(__import__("json").dumps(stale))
    assert study.library_names(cache)["classifiers"] == names["classifiers"]  # another version: looked up again


def test_presets_share_the_study_registry_and_change_only_their_scale(tmp_path, monkeypatch):
    registry = yaml.safe_load((REPO / "configs" / "methods.yaml").read_text())
    for name in ("config.yaml", "configs/imagenet10.yaml", "configs/imagenet.yaml", "configs/caltech256.yaml"):
        config = yaml.safe_load((REPO / name).read_text())
        assert config["methods_file"] == "configs/methods.yaml", name
        merged = study.merge_registry(registry, config["methods"])
        # What defines a method (its kind, prompt, target) comes from the registry alone.
        for method, entry in merged.items():
            assert entry["kind"] == registry[method]["kind"], (name, method)
            target = (entry.get("personalise") or {}).get("target")
            assert target == (registry[method].get("personalise") or {}).get("target"), (name, method)


def test_a_config_changes_the_registry_key_by_key(tmp_path, monkeypatch):
    (tmp_path / "methods.yaml").write_text(
        yaml.safe_dump(
            {
                "baseline": {"kind": "real"},
                "real_upper_bound": {"kind": "real", "real_multiplier": 2},
                "gen_ti": {"kind": "generate", "personalise": {"target": "token", "vectors": 2}},
            }
        )
    )
    config = copy.deepcopy(SMOKE)
    config["methods_file"] = "methods.yaml"
    config["methods"] = {
        "real_upper_bound": None,  # removed
        "gen_ti": {"steps": 4, "personalise": {"steps": 5}},  # changed, the personalise entry key by key
        "retrieve_text": {"kind": "retrieve"},  # added
    }
    smoke = read(config, tmp_path, monkeypatch)
    assert list(smoke.methods) == ["baseline", "gen_ti", "retrieve_text"]
    assert smoke.methods["gen_ti"]["steps"] == 4
    assert {key: smoke.methods["gen_ti"]["personalise"][key] for key in ("target", "vectors", "steps")} == {
        "target": "token",
        "vectors": 2,
        "steps": 5,
    }
    config["methods_file"] = "nowhere.yaml"
    with pytest.raises(study.ConfigError, match="config methods_file: nowhere.yaml does not exist"):
        read(config, tmp_path, monkeypatch)
    # A change to a method the file lacks must name a kind, as any new method does.
    config.update(methods_file="methods.yaml", methods={"gen_typo": {"steps": 4}})
    with pytest.raises(study.ConfigError, match="config methods.gen_typo: 'kind' is a required property"):
        read(config, tmp_path, monkeypatch)


def test_every_config_key_has_a_description_and_only_schema_keywords():
    """The schema is the config's reference: a key without a description, or a keyword that is not
    JSON Schema's (as an unquoted comma in a YAML flow mapping makes one), is a defect of it."""
    keywords = {"description", "type", "default", "enum", "const", "minimum", "maximum", "exclusiveMinimum"}
    keywords |= {"items", "minItems", "uniqueItems", "pattern", "minLength", "properties", "additionalProperties"}
    keywords |= {"$ref", "if", "then", "allOf", "anyOf", "required", "minProperties", "propertyNames"}

    def walk(properties: dict, where: str):
        for key, entry in properties.items():
            assert set(entry) <= keywords, (f"{where}{key}", set(entry) - keywords)
            assert key == "kind" or entry.get("description"), f"{where}{key} has no description"
            yield from walk(entry.get("properties", {}), f"{where}{key}.")
            yield key

    schema = study.schema()
    checked = list(walk(schema["properties"], ""))
    for name, definition in schema["$defs"].items():
        checked += list(walk(definition.get("properties", {}), f"$defs.{name}."))
    assert len(checked) > 100


def test_a_method_of_several_gpus_personalises_under_torchrun_on_that_many(tmp_path, monkeypatch):
    config = broken(lambda c: c["methods"]["gen_dm_finetune"]["personalise"].update(processes=2))
    smoke = read(config, tmp_path, monkeypatch)
    assert smoke.personalise_launcher("gen_dm_finetune") == "torchrun --standalone --nproc_per_node 2"
    assert smoke.personalise_launcher("gen_conditioning_ft") == "python"
    assert smoke.personalise_processes("gen_dm_finetune") == 2
    assert "processes" not in smoke.personalisation_options("gen_dm_finetune")  # torchrun's, not an option
    # The cost table counts the method's GPU hours with its own GPUs, the others' with the rule's.
    assert smoke.gpus()["personalise/gen_dm_finetune"] == 2 and smoke.gpus()["personalise"] == 1
    assert "personalise/gen_conditioning_ft" not in smoke.gpus()
