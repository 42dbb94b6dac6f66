"""A stage's settings have their defaults in one place: the config schema. The settings
dataclasses that mirror config keys must agree with it, and their command lines must reach them."""

from __future__ import annotations

import inspect
from dataclasses import MISSING, fields
from pathlib import Path

import pytest
import yaml

from augbench import generate, personalisation, personalise

SCHEMA = yaml.safe_load((Path(__file__).resolve().parents[1] / "workflow/schemas/config.schema.yaml").read_text())
SETTINGS = [personalisation.Training, generate.Sampling, generate.Generation]


def schema_entry(key: str) -> dict:
    """The schema of a config key; ``methods.*.`` is a generation method's entry, and
    ``methods.*.personalise.`` its personalisation."""
    parts = key.split(".")
    node = SCHEMA
    if parts[:2] == ["methods", "*"]:
        node, parts = SCHEMA["$defs"]["generate_method"], parts[2:]
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
        entry = schema_entry(key)
        if item.default is MISSING:
            assert "default" not in entry, f"{settings_class.__name__}.{item.name}: {key} has a default in the schema"
        else:
            assert entry["default"] == item.default, f"{settings_class.__name__}.{item.name} differs from {key}"
        if item.metadata.get("choices") and "enum" in entry:
            assert sorted(item.metadata["choices"]) == sorted(entry["enum"]), key


def test_every_setting_of_personalisation_and_generation_methods_is_mirrored():
    # What a method's entry sets reaches the stages through these dataclasses; a key added to
    # the schema must be added there too (kind, shards and personalise are the workflow's own).
    personalise_keys = {key.rsplit(".", 1)[1] for key in mirrored(personalisation.Training) if ".personalise." in key}
    assert personalise_keys == set(SCHEMA["$defs"]["personalisation"]["properties"]) - {"shards"}
    generate_keys = {
        key.removeprefix("methods.*.")
        for settings_class in (generate.Sampling, generate.Generation)
        for key in mirrored(settings_class)
        if key.startswith("methods.*.")
    }
    assert generate_keys == set(SCHEMA["$defs"]["generate_method"]["properties"]) - {"kind", "shards", "personalise"}


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
