"""A stage's settings have their defaults in one place: the config schema. The settings
dataclasses that mirror config keys must agree with it, and their command lines must reach them."""

from __future__ import annotations

import inspect
from dataclasses import MISSING, fields
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from augbench import (
    clip_settings,
    copies,
    copy_calibration,
    diagnostics,
    download,
    embed,
    exclude,
    generate,
    knn_service,
    personalisation,
    personalise,
    screen_downloads,
    sharded_retrieval,
)

SCHEMA = yaml.safe_load((Path(__file__).resolve().parents[1] / "workflow/schemas/config.schema.yaml").read_text())
SETTINGS = [personalisation.Training, generate.Sampling, generate.Generation, sharded_retrieval.Retrieval]
SETTINGS += [knn_service.Service, knn_service.Candidates, download.Fetching]
SETTINGS += [copies.CopyChecks, exclude.SafetyTags, clip_settings.Clip, clip_settings.ImageEmbedding]
SETTINGS += [diagnostics.Diagnostics, copy_calibration.CopyCalibration]
# The kind of method entry that ``methods.*.`` means in a settings class's keys (a generation method's by default).
METHOD_ENTRY = {sharded_retrieval.Retrieval: "retrieve_method"}
METHOD_ENTRY |= dict.fromkeys([knn_service.Service, knn_service.Candidates, download.Fetching], "retrieve_method")
# Keys whose schema default is null but whose setting is required: the config check refuses them unset where used.
REQUIRED_WHERE_USED = {"methods.*.service.url": "Study.check requires it of a method with backend clip_service"}
# Keys of a retrieval method's entry that the local search (augbench.sharded_retrieval) does not read, and who does.
NOT_READ_BY_THE_LOCAL_SEARCH = {
    "kind": "the workflow's: it makes the method a retrieval",
    "backend": "the workflow's: it picks the rule, the local search or the kNN service (augbench.knn_service)",
    "query": "the workflow's: it picks the embeddings given as --queries, and --query-manifest for image queries",
    "index": "the workflow's: it picks the embeddings given as --pool-embeddings (images or captions)",
    "service": "augbench.knn_service's, the kNN service's query options",
    "download": "augbench.download's; download.factor reaches the local search as candidate_factor where a method "
    "downloads, and a method that does not retrieves its quota (candidate_factor None)",
}
# Keys of a retrieval method's service and download objects that augbench.knn_service and
# augbench.download do not read, and who does.
NOT_READ_BY_THE_SERVICE_QUERY_OR_THE_DOWNLOAD = {
    "service.embed": "the workflow's: with local it embeds the queries and gives them as --embeddings",
    "service.python": "the workflow's: the Python (with clip-retrieval) that runs augbench.knn_service",
    "download.enabled": "the workflow's: it decides whether the rules download and screen_downloads run",
    "download.python": "the workflow's: the Python (with img2dataset) that runs augbench.download",
}


def schema_entry(key: str, method_entry: str = "generate_method") -> dict:
    """The schema of a config key; ``methods.*.`` is a method's entry (of kind ``method_entry``),
    and ``methods.*.personalise.`` a generation method's personalisation."""
    parts = key.split(".")
    node = SCHEMA
    if parts[:2] == ["methods", "*"]:
        node, parts = SCHEMA["$defs"][method_entry], parts[2:]
        if parts[0] == "personalise":
            node, parts = SCHEMA["$defs"]["personalisation"], parts[1:]
    for part in parts:
        node = node["properties"][part]
    return node


def mirrored(settings_class) -> dict[str, object]:
    """Config key -> field, of the fields that mirror a config key."""
    return {item.metadata["config"]: item for item in fields(settings_class) if item.metadata.get("config")}


@pytest.mark.parametrize("settings_class", SETTINGS, ids=lambda cls: cls.__name__)
def test_setting_defaults_and_choices_are_the_config_schema_ones(settings_class):
    assert mirrored(settings_class)
    for key, item in mirrored(settings_class).items():
        entry = schema_entry(key, METHOD_ENTRY.get(settings_class, "generate_method"))
        if item.default is MISSING and key in REQUIRED_WHERE_USED:
            assert entry["default"] is None, key
        elif item.default is MISSING:
            assert "default" not in entry, f"{settings_class.__name__}.{item.name}: {key} has a default in the schema"
        else:
            default = list(item.default) if isinstance(item.default, tuple) else item.default  # YAML has lists
            assert entry["default"] == default, f"{settings_class.__name__}.{item.name} differs from {key}"
        if item.metadata.get("choices") and "enum" in entry:
            assert sorted(item.metadata["choices"]) == sorted(entry["enum"]), key


def test_every_setting_of_personalisation_and_generation_methods_is_mirrored():
    # What a method's entry sets reaches the stages through these dataclasses; a key added to
    # the schema must be added there too (kind, shards, processes and personalise are the
    # workflow's own, and diffusion replaces keys of config diffusion, which Sampling mirrors).
    personalise_keys = {key.rsplit(".", 1)[1] for key in mirrored(personalisation.Training) if ".personalise." in key}
    assert personalise_keys == set(SCHEMA["$defs"]["personalisation"]["properties"]) - {"shards", "processes"}
    generate_keys = {
        key.removeprefix("methods.*.")
        for settings_class in (generate.Sampling, generate.Generation)
        for key in mirrored(settings_class)
        if key.startswith("methods.*.")
    }
    entry = SCHEMA["$defs"]["generate_method"]["properties"]
    assert generate_keys == set(entry) - {"kind", "shards", "personalise", "diffusion"}
    sampling_keys = {
        key.removeprefix("diffusion.") for key in mirrored(generate.Sampling) if key.startswith("diffusion.")
    }
    assert set(entry["diffusion"]["properties"]) <= sampling_keys | {"model"}
    # A method's own diffusion keys take what config diffusion's take, and have no default of their own.
    for key, own in entry["diffusion"]["properties"].items():
        shared = SCHEMA["properties"]["diffusion"]["properties"][key]
        assert "default" not in own and {k: v for k, v in shared.items() if k not in ("default", "description")} == {
            k: v for k, v in own.items() if k != "description"
        }, key


def test_every_setting_of_the_local_search_is_mirrored():
    # A key added to a retrieval method's entry reaches augbench.sharded_retrieval through Retrieval, or
    # is listed above with the stage that reads it.
    keys = mirrored(sharded_retrieval.Retrieval)
    method_keys = {key.removeprefix("methods.*.") for key in keys if key.startswith("methods.*.")}
    entry_keys = set(SCHEMA["$defs"]["retrieve_method"]["properties"])
    assert set(NOT_READ_BY_THE_LOCAL_SEARCH) <= entry_keys
    assert method_keys == entry_keys - set(NOT_READ_BY_THE_LOCAL_SEARCH)
    assert "pool.index_memory_gb" in keys


def test_every_setting_of_the_service_query_and_the_download_is_mirrored():
    # A key added to a retrieval method's service or download object reaches augbench.knn_service
    # or augbench.download through their settings, or is listed above with who reads it.
    entry = SCHEMA["$defs"]["retrieve_method"]["properties"]
    exempt = set(NOT_READ_BY_THE_SERVICE_QUERY_OR_THE_DOWNLOAD)
    assert exempt <= {f"{name}.{key}" for name in ("service", "download") for key in entry[name]["properties"]}

    def read(name: str) -> set[str]:
        return {f"methods.*.{name}.{key}" for key in entry[name]["properties"] if f"{name}.{key}" not in exempt}

    assert set(mirrored(knn_service.Service)) == read("service")
    # download.factor sets how many candidates the service query asks for; the download fetches them all.
    assert set(mirrored(download.Fetching)) == read("download") - {"methods.*.download.factor"} | {
        "methods.*.per_class"
    }
    assert "methods.*.download.factor" in mirrored(knn_service.Candidates)


def test_the_stages_device_default_is_the_configs():
    assert (
        inspect.signature(personalise.personalise).parameters["device"].default
        == SCHEMA["properties"]["device"]["default"]
    )


def test_command_lines_reach_the_settings_and_leave_the_rest_at_their_defaults(monkeypatch):
    calls = []
    monkeypatch.setattr(personalise, "personalise", lambda *args, **kwargs: calls.append((args, kwargs)))
    options = ["--model", "m", "--classes", "c", "--subset", "s", "--out", "o", "--target", "unet"]
    personalise.main(options + ["--unet", "full", "--gradient-checkpointing", "true", "--shards", "1"])
    (model, classes, subset, out, training), job = calls.pop()
    assert training == personalisation.Training(target="unet", unet="full", gradient_checkpointing=True)
    assert (model, classes, subset, out, job) == ("m", "c", "s", "o", {"shards": 1})

    monkeypatch.setattr(generate, "generate", lambda *args, **kwargs: calls.append((args, kwargs)) or [])
    options = ["--model", "m", "--classes", "c", "--subset", "s", "--out-dir", "d", "--steps", "3", "--seed", "2"]
    generate.main(options + ["--personalisation", "a", "--personalisation", "b", "--per-class", "5", "--shard", "1"])
    (classes, subset, out_dir, sampling, generation), job = calls.pop()
    assert sampling == generate.Sampling("m", steps=3)
    assert generation == generate.Generation(seed=2, per_class=5, personalisation=["a", "b"])
    assert (classes, subset, out_dir, job) == ("c", "s", "d", {"shard": 1})


def test_the_retrieval_command_lines_reach_their_settings_and_leave_the_rest_at_their_defaults(monkeypatch):
    calls = []
    for name in ("search_shard", "merge_shards"):
        monkeypatch.setattr(sharded_retrieval, name, lambda *args, **kwargs: calls.append((args, kwargs)))
    common = ["--pool", "p", "--queries", "q", "--subset", "s", "--classes", "c"]
    search = ["search", *common, "--shard", "1", "--shards", "4", "--pool-embeddings", "e", "--out", "o"]
    sharded_retrieval.main(search + ["--dedup", "false", "--nprobe", "16", "--search", "IVF64,Flat"])
    (*paths, settings), files = calls.pop()
    assert settings == sharded_retrieval.Retrieval(dedup=False, nprobe=16, search="IVF64,Flat")
    assert paths == ["p", 1, 4, "e", "q", "s", "c", "o"]
    assert files == {
        "round_": 0,
        "query_manifest": None,
        "image_embeddings": None,
        "class_prompts": None,
        "exclude": None,
        "parts": 1,
        "shard_table": None,
        "index": "images",
    }
    merge = ["merge", *common, "--candidates", "a.npz", "b.npz", "--out-dir", "m"]
    sharded_retrieval.main(merge + ["--per-class", "7", "--candidate-factor", "1.5", "--index-memory-gb", "2"])
    (*paths, settings), files = calls.pop()
    assert settings == sharded_retrieval.Retrieval(per_class=7, candidate_factor=1.5, index_memory_gb=2.0)
    assert paths == ["p", ["a.npz", "b.npz"], "q", "s", "c", "m"]
    assert files == {"query_manifest": None, "shard_table": None}


def test_the_service_query_and_download_command_lines_reach_their_settings(monkeypatch):
    calls = []
    monkeypatch.setattr(knn_service, "query_service", lambda *args, **kwargs: calls.append((args, kwargs)))
    options = ["--subset", "s", "--classes", "c", "--out", "o", "--url", "http://host:1/knn-service"]
    knn_service.main(options + ["--deduplicate", "false", "--max-images", "50", "--factor", "2", "--query", "image"])
    (subset, classes, out, service, asked, embeddings), _ = calls.pop()
    assert service == knn_service.Service("http://host:1/knn-service", deduplicate=False, max_images=50)
    assert asked == knn_service.Candidates(query="image", factor=2.0)
    assert (subset, classes, out, embeddings) == ("s", "c", "o", None)
    knn_service.main(options + ["--modality", "text", "--template", "a {}", "--embeddings", "e.npy"])
    (*_, service, asked, embeddings), _ = calls.pop()
    assert (service.modality, asked.template, embeddings) == ("text", "a {}", "e.npy")
    with pytest.raises(SystemExit):  # the service's endpoint has no default
        knn_service.main(options[:-2])

    monkeypatch.setattr(download, "download", lambda *args, **kwargs: calls.append((args, kwargs)) or ([], []))
    options = ["--candidates", "k", "--subset", "s", "--classes", "c", "--images-dir", "d", "--out", "o"]
    download.main(options + ["--failures", "f", "--retries", "0", "--image-size", "64", "--per-class", "3"])
    (*paths, fetching), _ = calls.pop()
    assert fetching == download.Fetching(per_class=3, retries=0, image_size=64)
    assert paths == ["k", "s", "c", "d", "o", "f"]


# Keys of contamination.* that the copy checks (augbench.copies.CopyChecks) hold under the same
# name without mirroring the schema's default, and why.
COPY_CHECKS_OFF_UNLESS_ASKED = {
    key: "a stage checks for copies only when asked (None: off); 0.95 is the study's choice, which the rules "
    "pass from the config, leaving the option out where the config turns the check off (null) or calibrates "
    "it (auto: the job gets the calibration's JSON instead)"
    for key in ("eval_threshold", "train_threshold")
}
# Keys of clip.* that the embedding settings (augbench.clip_settings.Clip) do not mirror, and why.
CLIP_WITHOUT_A_DEFAULT = {
    "model": "required on every command line that embeds: embeddings that meet in one search must come from "
    "one CLIP, the config's, which every rule passes, so a stage has none of its own to fall back on",
}


def test_every_contamination_setting_reaches_the_copy_checks():
    keys = set(SCHEMA["properties"]["contamination"]["properties"])
    mirrored_keys = {key.removeprefix("contamination.") for key in mirrored(copies.CopyChecks)}
    # auto's settings reach the calibration (augbench.copy_calibration) instead.
    calibration_keys = {key.removeprefix("contamination.") for key in mirrored(copy_calibration.CopyCalibration)}
    assert keys == {key for key in mirrored_keys if "." not in key} | set(COPY_CHECKS_OFF_UNLESS_ASKED) | (
        calibration_keys
    )
    assert "pool.index_memory_gb" in mirrored_keys
    settings = {item.name: item for item in fields(copies.CopyChecks)}
    for key in COPY_CHECKS_OFF_UNLESS_ASKED:
        # The rules pass contamination.* as options of the same names; null must mean what the stage's None means.
        assert settings[key].default is None and "null" in schema_entry(f"contamination.{key}")["type"]
    assert {"pool.safety_column", "pool.drop_safety_values"} == set(mirrored(exclude.SafetyTags))


def test_every_clip_setting_reaches_the_embedding_settings():
    keys = {key.removeprefix("clip.") for key in mirrored(clip_settings.ImageEmbedding) if key.startswith("clip.")}
    assert keys | set(CLIP_WITHOUT_A_DEFAULT) == set(SCHEMA["properties"]["clip"]["properties"])
    assert not keys & set(CLIP_WITHOUT_A_DEFAULT)
    model = next(item for item in fields(clip_settings.Clip) if item.name == "model")
    assert model.default is MISSING and not model.metadata["config"]
    assert "device" in mirrored(clip_settings.Clip)


def test_the_screening_and_embedding_command_lines_reach_their_settings(monkeypatch):
    calls = []

    def recorded(result):
        return lambda *args, **kwargs: calls.append((args, kwargs)) or result

    monkeypatch.setattr(exclude, "exclusions", recorded(pd.DataFrame(columns=copies.COLUMNS)))
    options = ["--pool", "p", "--pool-embeddings", "e", "--out", "o"]
    exclude.main(options)
    (*paths, checks, safety), files = calls.pop()
    assert (paths, checks, safety) == (["p", "e", "o"], copies.CopyChecks(), exclude.SafetyTags())
    assert files == dict.fromkeys(copies.REFERENCE_FILES) | {"shard": 0, "shards": 1, "shard_table": None, "parts": 1}
    exclude.main(options + ["--shard", "2", "--shards", "4"])
    _, files = calls.pop()
    assert (files["shard"], files["shards"]) == (2, 4)
    # The safety values are one comma-separated word, as the rule joins the config's list; "" drops none.
    exclude.main(options + ["--eval-threshold", "0.9", "--eval-manifest", "v", "--eval-embeddings", "ve"])
    (*_, checks, _), files = calls.pop()
    assert checks == copies.CopyChecks(eval_threshold=0.9)
    assert (files["eval_manifest"], files["eval_embeddings"]) == ("v", "ve")
    exclude.main(options + ["--drop-safety-values", "NSFW, UNSURE,x", "--safety-column", "s"])
    assert calls.pop()[0][-1] == exclude.SafetyTags("s", ("NSFW", "UNSURE", "x"))
    exclude.main(options + ["--drop-safety-values", "", "--index-memory-gb", "2"])
    (*_, checks, safety), _ = calls.pop()
    assert (checks, safety) == (copies.CopyChecks(index_memory_gb=2.0), exclude.SafetyTags(drop_safety_values=()))

    monkeypatch.setattr(screen_downloads, "screen_downloads", recorded(([], [])))
    options = ["--downloaded", "d", "--subset", "s", "--classes", "c", "--out", "o", "--excluded", "x", "--model", "m"]
    screen_downloads.main(options + ["--num-workers", "0", "--train-threshold", "0.8", "--train-manifest", "t"])
    (*paths, clip, per_class, checks), files = calls.pop()
    assert (paths, clip, per_class) == (
        ["d", "s", "c", "o", "x"],
        clip_settings.ImageEmbedding("m", num_workers=0),
        None,
    )
    assert checks == copies.CopyChecks(train_threshold=0.8) and files["train_manifest"] == "t"
    with pytest.raises(SystemExit):  # downloads carry no safety tags
        screen_downloads.main(options + ["--drop-safety-values", "NSFW"])

    monkeypatch.setattr(embed, "embed_images", recorded(np.zeros((0, 2))))
    embed.main(["images", "--manifest", "m", "--out", "o", "--model", "c", "--batch-size", "8", "--shard", "1"])
    assert calls.pop() == (("m", "o", clip_settings.ImageEmbedding("c", batch_size=8), 1, 1, None), {})
    with pytest.raises(SystemExit):  # a text has no images to batch
        embed.main(["prompts", "--classes", "c", "--out", "o", "--model", "c", "--batch-size", "8"])
