from dataclasses import fields
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from augbench import collect, generate
from augbench.files import write_manifest
from augbench.methods import SettingError
from augbench.prompts import clip_templates
from augbench.shards import shard_block


def _generate(model, classes, subset, out_dir, shard=0, shards=1, manifest=None, **options):
    """generate.generate with each option handed to the settings object that has it."""
    sampling = {key: options.pop(key) for key in [item.name for item in fields(generate.Sampling)] if key in options}
    settings = (generate.Sampling(model, **sampling), generate.Generation(**options))
    return generate.generate(classes, subset, out_dir, *settings, shard=shard, shards=shards, manifest=manifest)


def _subset(tmp_path, labels):
    path = tmp_path / "subset.csv"
    write_manifest(path, pd.DataFrame({"path": [f"r{i}" for i in range(len(labels))], "label": labels}))
    return str(path)


def test_generates_the_quota_per_class_with_prompts_and_seeds(miniworld, tiny_pipeline, tmp_path):
    subset = _subset(tmp_path, [0, 0, 3])
    plan = _generate(
        tiny_pipeline, str(miniworld / "classes.txt"), subset, str(tmp_path / "gen"), steps=2, batch_size=2
    )
    assert plan.label.tolist() == [0, 0, 3]
    assert plan.prompt.tolist() == ["a photo of a zero"] * 2 + ["a photo of a three"]
    assert plan.seed.nunique() == 3
    for path in plan.path:
        with Image.open(path) as image:
            assert image.size == (16, 16) and image.mode == "RGB"
    manifest = pd.read_csv(tmp_path / "gen" / "manifest.csv")
    assert manifest[["path", "label", "prompt", "seed", "scheduler", "steps", "guidance_scale"]].shape == (3, 7)


def test_rerun_keeps_finished_images_and_batching_does_not_change_them(miniworld, tiny_pipeline, tmp_path):
    subset = _subset(tmp_path, [1, 1, 1, 2])
    classes = str(miniworld / "classes.txt")
    first = _generate(tiny_pipeline, classes, subset, str(tmp_path / "a"), steps=2, batch_size=4)
    kept, removed = Path(first.path.iloc[0]), Path(first.path.iloc[-1])
    mtime = kept.stat().st_mtime_ns
    removed.unlink()
    _generate(tiny_pipeline, classes, subset, str(tmp_path / "a"), steps=2, batch_size=4)
    assert kept.stat().st_mtime_ns == mtime
    assert removed.exists()
    # Per-image seeds: one image at a time gives the same pictures as batches of four.
    single = _generate(tiny_pipeline, classes, subset, str(tmp_path / "b"), steps=2, batch_size=1)
    for path_a, path_b in zip(first.path, single.path):
        a = Image.open(path_a).tobytes()
        b = Image.open(path_b).tobytes()
        assert sum(abs(x - y) for x, y in zip(a, b)) / len(a) < 1.0


def test_image_seed_is_stable_and_distinct():
    assert generate.image_seed(0, 1, 2) == generate.image_seed(0, 1, 2)
    assert len({generate.image_seed(0, c, i) for c in range(10) for i in range(10)}) == 100


def test_changed_settings_do_not_reuse_stale_images(miniworld, tiny_pipeline, tmp_path):
    subset = _subset(tmp_path, [4])
    classes = str(miniworld / "classes.txt")
    two_steps = _generate(tiny_pipeline, classes, subset, str(tmp_path / "g"), steps=2)
    three_steps = _generate(tiny_pipeline, classes, subset, str(tmp_path / "g"), steps=3)
    assert two_steps.path.iloc[0] != three_steps.path.iloc[0]
    assert Path(two_steps.path.iloc[0]).exists() and Path(three_steps.path.iloc[0]).exists()
    manifest = pd.read_csv(tmp_path / "g" / "manifest.csv")
    assert manifest.path.tolist() == three_steps.path.tolist()
    assert (manifest.steps == 3).all()


def test_clip_template_prompts_are_seeded_and_name_the_class(tmp_path):
    plan = generate.plan_images(["tench", "goldfish"], [20, 20], "a photo of a {}", 0, tmp_path, "clip_templates")
    again = generate.plan_images(["tench", "goldfish"], [20, 20], "a photo of a {}", 0, tmp_path, "clip_templates")
    assert plan.prompt.tolist() == again.prompt.tolist()
    assert plan[plan.label == 0].prompt.str.contains("tench").all()
    assert plan[plan.label == 1].prompt.str.contains("goldfish").all()
    assert plan.prompt.nunique() > 20  # drawn from 80 templates, not one
    templates = {template("X") for template in clip_templates()}
    assert len(templates) == 80
    assert {prompt.replace("tench", "X").replace("goldfish", "X") for prompt in plan.prompt} <= templates


def test_unconditional_images_are_labelled_by_zero_shot_and_the_most_confident_kept(tmp_path):
    plan = generate.plan_images(["a", "b"], [4, 4], "a photo of a {}", 0, tmp_path, "empty")
    assert len(plan) == 8 and (plan.label == -1).all() and (plan.prompt == "").all()
    # Six images look like class 0 (with falling confidence), two like class 1.
    image_features = np.array(
        [[1, 0], [0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.6, 0.4], [0.55, 0.45], [0, 1], [0.2, 0.8]]
    )
    labelled = generate.zero_shot_label(plan, image_features, np.eye(2))
    # Shards label their own images; the choice is made over all of them.
    shards = [labelled.iloc[shard_block(8, k, 3)] for k in range(3)]
    kept = collect.zero_shot_select(pd.concat(shards), quotas=[3, 3], keep_share=0.5)
    by_class = kept.groupby("label").path.apply(list).to_dict()
    assert by_class[0] == plan.path[:3].tolist()  # the top half of six, within the quota of three
    assert by_class[1] == plan.path[6:7].tolist()  # the top half of two: one, short of its quota
    assert kept.zero_shot_score.between(0, 1).all()


def test_image_variations_start_from_the_real_images_of_their_class_in_turn():
    subset = pd.DataFrame({"path": ["c0a", "c0b", "c1a"], "label": [0, 0, 1]})
    plan = pd.DataFrame({"label": [0, 0, 0, 1, 1]})
    assert generate.assign_sources(plan, subset) == ["c0a", "c0b", "c0a", "c1a", "c1a"]


def test_img2img_records_source_and_strength(miniworld, tiny_pipeline, tmp_path):
    train = pd.read_csv(miniworld / "train" / "manifest.csv")
    subset = tmp_path / "real.csv"
    write_manifest(subset, train[train.label == 2].head(2)[["path", "label"]])
    plan = _generate(
        tiny_pipeline, str(miniworld / "classes.txt"), str(subset), str(tmp_path / "v"), steps=4, strength=0.5
    )
    manifest = pd.read_csv(tmp_path / "v" / "manifest.csv")
    assert manifest.source.tolist() == sorted(train[train.label == 2].head(2).path)
    assert (manifest.strength == 0.5).all() and (manifest["class"] == "two").all()
    for path in plan.path:
        with Image.open(path) as image:
            assert image.size == (16, 16)


def test_shards_make_every_image_once_with_the_images_of_one_job(miniworld, tiny_pipeline, tmp_path):
    subset = _subset(tmp_path, [0, 0, 1, 2, 2])
    classes = str(miniworld / "classes.txt")
    whole = _generate(tiny_pipeline, classes, subset, str(tmp_path / "one"), steps=2)
    parts = [
        _generate(
            tiny_pipeline,
            classes,
            subset,
            str(tmp_path / "three"),
            steps=2,
            shard=k,
            shards=3,
            manifest=str(tmp_path / f"shard{k}.csv"),
        )
        for k in range(3)
    ]
    merged = collect.collect(
        [str(tmp_path / f"shard{k}.csv") for k in range(3)], subset, classes, str(tmp_path / "manifest.csv")
    )
    assert [len(part) for part in parts] == [2, 2, 1]
    assert merged.seed.tolist() == whole.seed.tolist() and merged.prompt.tolist() == whole.prompt.tolist()
    for path_a, path_b in zip(whole.path, merged.path):  # same seeds; batching may change the last bit
        a, b = (np.asarray(Image.open(path), dtype=float) for path in (path_a, path_b))
        assert np.abs(a - b).mean() < 1.0


def test_images_below_their_threshold_are_made_again_in_bounded_rounds(tmp_path):
    plan = generate.plan_images(["a", "b"], [3, 2], "a photo of a {}", 0, tmp_path, "classname")
    made = []

    def sample(todo):
        made.append(todo.path.tolist())

    def score(frame):  # a stand-in for CLIP, fixed per image seed
        return np.array([(seed % 1000) / 1000 for seed in frame.seed])

    thresholds = np.array([0.5, -1.0])
    kept = generate.regenerate_below_threshold(plan, thresholds, 20, score, sample, ["a", "b"])
    assert (kept.clip_score >= kept.min_clip_score).all()
    assert kept.label.tolist() == plan.label.tolist() and kept.prompt.tolist() == plan.prompt.tolist()
    first_pass = score(plan) >= thresholds[plan.label]
    # Images that passed stay as they were; the others were replaced, each by its own new seed and file.
    assert (kept.path[first_pass] == plan.path[first_pass]).all() and (kept.attempt[first_pass] == 0).all()
    assert (kept.attempt[~first_pass] > 0).all() and kept.path[~first_pass].str.contains("_retry").all()
    assert sum(len(paths) for paths in made) == kept.attempt.sum()  # every replaced image was made once
    again = generate.regenerate_below_threshold(plan, thresholds, 20, score, lambda todo: None, ["a", "b"])
    pd.testing.assert_frame_equal(kept, again)
    with pytest.raises(ValueError, match=r"after 0 regeneration round\(s\), class\(es\) 'a' \("):
        generate.regenerate_below_threshold(plan, np.array([0.999, -1.0]), 0, score, sample, ["a", "b"])


def test_generation_with_a_clip_score_filter_meets_the_quota_and_resumes(miniworld, tiny_pipeline, tiny_clip, tmp_path):
    from augbench.clip_embeddings import embed_texts
    from augbench.files import read_classes
    from augbench.prompts import class_prompts

    classes = str(miniworld / "classes.txt")
    subset = _subset(tmp_path, [0, 0, 0, 1])
    prompts = str(tmp_path / "prompts.npy")
    embed_texts(class_prompts(read_classes(classes), "a photo of a {}"), prompts, tiny_clip)
    options = dict(steps=2, class_embeddings=prompts, clip_model=tiny_clip, regenerate_rounds=10, min_clip_score=-1)
    unfiltered = _generate(tiny_pipeline, classes, subset, str(tmp_path / "g"), **options)
    # Class zero's threshold is its second best first score: its worst image is made again.
    scores = sorted(unfiltered[unfiltered.label == 0].clip_score)
    (tmp_path / "t.tsv").write_text(f"zero\t{scores[1]}\n")
    options["min_clip_score_file"] = str(tmp_path / "t.tsv")
    filtered = _generate(
        tiny_pipeline, classes, subset, str(tmp_path / "g"), manifest=str(tmp_path / "shard0.csv"), **options
    )
    zero = filtered[filtered.label == 0]
    assert len(zero) == 3 and (zero.clip_score >= scores[1]).all() and zero.attempt.sum() >= 1
    assert (filtered[filtered.label == 1].attempt == 0).all()
    # A rerun finds every image, the replacements too, and makes none again.
    mtimes = {path: Path(path).stat().st_mtime_ns for path in filtered.path}
    rerun = _generate(
        tiny_pipeline, classes, subset, str(tmp_path / "g"), manifest=str(tmp_path / "rerun.csv"), **options
    )
    assert rerun.path.tolist() == filtered.path.tolist()
    assert {path: Path(path).stat().st_mtime_ns for path in rerun.path} == mtimes
    merged = collect.collect(
        [str(tmp_path / "shard0.csv")], subset, classes, str(tmp_path / "m.csv"), quality_out=str(tmp_path / "q.csv")
    )
    assert len(merged) == 4
    assert pd.read_csv(tmp_path / "q.csv").dropped.tolist()[:2] == [zero.attempt.sum(), 0]


def test_a_combination_the_registry_refuses_is_refused_before_any_image(tmp_path):
    subset = _subset(tmp_path, [0])
    with pytest.raises(SettingError) as error:
        _generate(
            "no-model", "no-classes", subset, str(tmp_path / "g"), prompt="empty", zero_shot_keep=0.5, strength=0.5
        )
    assert error.value.key == "prompt"


def test_an_artefact_learned_again_with_the_same_results_keeps_its_images(tmp_path):
    """safetensors writes its metadata in an order of its own: a rerun personalisation job with
    identical tensors and metadata must find the images made from the first one."""
    import json as json_module

    import torch
    from safetensors.torch import save_file

    from augbench.generate import settings_folder

    first = tmp_path / "first.safetensors"
    save_file({"token.0": torch.arange(6.0).reshape(2, 3)}, str(first), metadata={"target": "token", "vectors": "1"})
    raw = first.read_bytes()
    length = int.from_bytes(raw[:8], "little")
    header = json_module.loads(raw[8 : 8 + length])
    header["__metadata__"] = dict(reversed(list(header["__metadata__"].items())))
    text = json_module.dumps(header).encode()
    again = tmp_path / "again.safetensors"
    again.write_bytes(len(text).to_bytes(8, "little") + text + raw[8 + length :])
    assert again.read_bytes() != raw
    settings = {"steps": 4}
    assert settings_folder(tmp_path, settings, [str(first)]) == settings_folder(tmp_path, settings, [str(again)])
    changed = tmp_path / "changed.safetensors"
    save_file(
        {"token.0": torch.arange(6.0).reshape(2, 3) + 1}, str(changed), metadata={"target": "token", "vectors": "1"}
    )
    assert settings_folder(tmp_path, settings, [str(changed)]) != settings_folder(tmp_path, settings, [str(first)])


def test_image_to_image_with_no_step_to_run_is_refused_before_the_model_loads(tmp_path):
    subset = _subset(tmp_path, [0])
    (tmp_path / "classes.txt").write_text("zero\n")
    with pytest.raises(ValueError, match="strength 0.5 of 1 steps denoises in no step"):
        _generate("no-model", str(tmp_path / "classes.txt"), subset, str(tmp_path / "g"), steps=1, strength=0.5)
