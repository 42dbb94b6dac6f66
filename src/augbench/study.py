"""The study a config describes, as one validated object: the workflow's planning logic in Python.

    study = Study(yaml.safe_load(open("config.yaml")))  # checks it, fills its defaults in
    study.methods_of("retrieve"), study.downloads("retrieve_text"), study.paths.subset

Reading a config checks it whole before any job runs, each problem reported on one line
that names the key at fault (``config methods.gen_x.prompt: ...``): the JSON schema
(``workflow/schemas/config.schema.yaml``, which also fills in every default), the
combinations a schema cannot express (``augbench.methods`` holds the methods' own), the
data and model paths, and the names the config gives against the libraries' own lists
(torchvision models, open_clip models and pretrained tags).

Snakemake's ``workflow/rules/common.smk`` builds one ``Study`` and wires its answers into
the rules: which methods of each kind there are, which shared jobs exist, the files a job
reads and the command-line options of every stage. Unit tests call it directly.
"""

from __future__ import annotations

import csv
import functools
import glob
import importlib.metadata
import json
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import yaml

from augbench import methods as registry
from augbench.families import PIPELINES, backend_name
from augbench.pretraining_sizes import check_sizes
from augbench.shards import shard_block
from augbench.small_cnn import SMALL_CNNS

SCHEMA = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"
# Pre-trained models outlive an experiment: their jobs' benchmarks lie outside its folder, so
# that another experiment over the same models finds them rather than pre-training again.
# An experiment name starts with a letter or digit, so none is "_pretrained".
PRETRAIN_BENCHMARKS = "benchmarks/runs/_pretrained"
# Personalisation settings that change how it runs (memory), not what it learns. At their
# defaults (the schema's) they stay off the command line, so jobs run before they existed stand.
PERSONALISE_RUN_SETTINGS = ("micro_batch", "precision", "gradient_checkpointing")
# A method's personalise keys that shape its jobs (how many, on how many GPUs), not the command line.
PERSONALISE_JOB_SETTINGS = ("shards", "processes")
# The copy checks, by the names of their contamination.<check>_threshold (augbench.copies.CHECK_REASONS's,
# not imported here: it loads faiss into every dry run); auto calibrates one.
COPY_CHECKS = ("eval", "train")
AUTO = "auto"
# Options of augbench.generate that a method's entry in the registry sets.
GENERATE_OPTIONS = (
    "prompt",
    "scheduler",
    "steps",
    "guidance_scale",
    "true_cfg_scale",
    "seed",
    "strength",
    "zero_shot_keep",
)


class ConfigError(ValueError):
    """A config the study cannot run; the message is one line naming the key at fault."""


@functools.cache
def schema() -> dict:
    """The config schema (read once; callers do not change it)."""
    return yaml.safe_load(SCHEMA.read_text())


class UniqueKeyLoader(yaml.SafeLoader):
    """YAML that refuses a key given twice in one mapping (plain YAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor` merges a mapping, whose keys the mapping's own may override
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise ConfigError(
                    f"config file {key_node.start_mark.name} line {key_node.start_mark.line + 1}: "
                    f"key {key!r} is given twice in the same mapping (e.g. two methods of one name)"
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def check_duplicate_keys(paths: list[str]) -> None:
    for path in paths:
        with open(path) as handle:
            yaml.load(handle, Loader=UniqueKeyLoader)


def check_schema(config: dict) -> None:
    """Stop at the first schema violation with one line: the key at fault and what is allowed."""
    validator = jsonschema.Draft202012Validator(schema())
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is not None:
        key = ".".join(str(part) for part in error.absolute_path) or "(top level)"
        raise ConfigError(f"config {key}: {error.message}")


def fill_defaults(config: dict) -> dict:
    """Fill every default of the schema into ``config`` in place (nested objects and the
    methods' entries included), as Snakemake's ``validate(..., set_default=True)`` does."""
    base = jsonschema.Draft202012Validator
    properties = base.VALIDATORS["properties"]

    def properties_with_defaults(validator, subschemas, instance, definition):
        if isinstance(instance, dict):
            for name, subschema in subschemas.items():
                if "default" in subschema and name not in instance:
                    instance[name] = json.loads(json.dumps(subschema["default"]))
        yield from properties(validator, subschemas, instance, definition)

    filler = jsonschema.validators.extend(base, {"properties": properties_with_defaults})
    filler(schema()).validate(config)
    return config


def resolve(config: dict) -> dict:
    """A config as the workflow sees it, in place: the shared method registry merged in, checked
    against the schema and its defaults filled in (data, models and names are the Study's checks)."""
    if config.get("methods_file"):
        config["methods"] = merge_registry(read_registry(config["methods_file"]), config.get("methods") or {})
    check_renamed_keys(config)
    check_schema(config)
    return fill_defaults(config)


# Keys a config of an older augbench may still use: old -> new.
RENAMED_KEYS = {"pool.embed_shards": "pool.shards"}


def check_renamed_keys(config: dict) -> None:
    for old, new in RENAMED_KEYS.items():
        section, key = old.split(".")
        if isinstance(config.get(section), dict) and key in config[section]:
            raise ConfigError(
                f"config {old} was renamed {new} (the pool is now embedded, screened and searched "
                f"in {new} shards): write {new}: {config[section][key]}"
            )


def is_manifest(path: str) -> bool:
    return path.endswith((".csv", ".parquet"))


def cli_options(options: dict) -> str:
    """Command-line options of a module from a mapping; unset (None) values are left out.

    A list value repeats its flag (--manifest a --manifest b).
    """
    words = []
    for key, value in options.items():
        if value is None:
            continue
        flag = f"--{key.replace('_', '-')}"
        for item in value if isinstance(value, (list, tuple)) else [value]:
            text = str(item).lower() if isinstance(item, bool) else str(item)
            words += [flag, shlex.quote(text)]
    return " ".join(words)


@dataclass(frozen=True)
class Paths:
    """The files more than one rule names: where a job writes them and the next one reads them."""

    results: str
    logs: str
    benchmarks: str
    pool_webdataset: str
    pool_images: str  # the pool's images and captions as given (shards listed); pre-training reads these
    pool_manifest: str  # the pool as retrieval reads it
    pool_image_embeddings: str
    pool_caption_embeddings: str
    pool_clip_retrieval_unreadable: str
    pool_excluded: str  # pool rows no retrieval method may return (copies, safety tags)
    train_manifest: str
    val_manifest: str  # the validation images that can be read: every method is evaluated on them
    val_unreadable: str
    subset: str
    subset_rest: str
    subset_unreadable: str
    class_prompts: str
    subset_embeddings: str
    val_embeddings: str


class Study:
    """A config read and checked: the methods, the shared jobs, each job's inputs and options."""

    def __init__(self, config: dict):
        """Check ``config`` (a dict as Snakemake holds it; defaults are filled in, in place)."""
        self.config = resolve(config)
        diagnostics = config["diagnostics"]
        diagnostics["enabled"] = str(diagnostics["enabled"]).lower() == "true"
        self.methods: dict[str, dict] = config["methods"]
        self.miniworld: dict = config["miniworld"]
        self.seeds = [int(seed) for seed in config["seeds"]]
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"config seeds: {config['seeds']} repeats a seed")
        self.paths = self._paths()
        self.check()

    # -- paths -------------------------------------------------------------------------

    def _paths(self) -> Paths:
        config, experiment = self.config, self.config["experiment"]
        results = f"results/{experiment}"
        pool = config["pool"]
        webdataset = f"{results}/data/pool_webdataset.csv"
        # The pool: a CSV or Parquet manifest; or img2dataset's webdataset shards (pool.manifest a
        # folder or glob of .tar files), which a job lists; or, with pool.embeddings, a clip-retrieval
        # folder whose embeddings and metadata are used as they are.
        images = pool["manifest"] if is_manifest(pool["manifest"]) else webdataset
        return Paths(
            results=results,
            logs=f"logs/{experiment}",
            benchmarks=f"benchmarks/runs/{experiment}",
            pool_webdataset=webdataset,
            pool_images=images,
            pool_manifest=f"{results}/data/pool_clip_retrieval.csv" if pool["embeddings"] else images,
            pool_image_embeddings=f"{results}/embed/pool_images.npy",
            pool_caption_embeddings=f"{results}/embed/pool_captions.npy",
            pool_clip_retrieval_unreadable=f"{results}/embed/pool_images/clip_retrieval.unreadable.csv",
            pool_excluded=f"{results}/pool/excluded.csv",
            train_manifest=self.dataset_manifest("train", results),
            val_manifest=f"{results}/data/val_readable.csv",
            val_unreadable=f"{results}/data/val_unreadable.csv",
            subset=f"{results}/subset/train.csv",
            subset_rest=f"{results}/subset/rest.csv",
            subset_unreadable=f"{results}/subset/unreadable.csv",
            class_prompts=f"{results}/embed/class_prompts.npy",
            subset_embeddings=f"{results}/embed/subset_images.npy",
            val_embeddings=f"{results}/embed/val_images.npy",
        )

    @property
    def pool_shards(self) -> bool:
        """Whether pool.manifest names img2dataset's webdataset shards (a folder or glob of .tar files)."""
        return not is_manifest(self.config["pool"]["manifest"])

    @property
    def pool_clip_retrieval(self) -> str | None:
        return self.config["pool"]["embeddings"]

    @property
    def pool_jobs(self) -> int:
        """The jobs the pool is embedded, screened and searched in, each a block of rows of
        pool.shards_per_job shards (a search indexes them one after another)."""
        return self.config["pool"]["shards"] // self.config["pool"]["shards_per_job"]

    @property
    def pool_parts_table(self) -> str | None:
        """Where a pool whose embeddings ship with it in parts (pool.embeddings) is listed as shards,
        read part by part where they lie: a DataComp folder, or a clip-retrieval folder in pool.shards
        parts. None where the pool is embedded here, or a one-part clip-retrieval folder is joined."""
        pool = self.config["pool"]
        if pool["embeddings"] and (pool["embeddings_layout"] == "datacomp" or pool["shards"] > 1):
            return f"{self.paths.results}/pool/shards.csv"
        return None

    @property
    def pool_listing_table(self) -> str | None:
        """Where webdataset shards embedded here in more than one job are listed a block of tars per job
        (each job of the pool reads its block's listing alone, pool_listing), as a shard table of the
        listings; None where one job lists them all (PATHS.pool_webdataset) or the pool is a manifest."""
        if self.pool_shards and not self.pool_clip_retrieval and self.pool_jobs > 1:
            return f"{self.paths.results}/pool/listings.csv"
        return None

    def pool_listing(self, shard) -> str:
        return f"{self.paths.results}/pool/listings/shard{shard}.parquet"

    @functools.cached_property
    def _pool_tars(self) -> list[str] | str:
        return self.pool_shard_files()  # globbed once, not once per listing job

    def pool_listing_files(self, shard) -> list[str] | str:
        """A listing job's tars: its block of a glob's (see augbench.pool), or the folder that holds them."""
        files = self._pool_tars
        if isinstance(files, str):
            return files
        return [files[index] for index in shard_block(len(files), int(shard), self.pool_jobs)]

    def pool_embedded(self, shard) -> str:
        """What embed_pool's job of block ``shard`` reads its rows from: the pool manifest (a block of
        its rows), or its own listing, so that it starts when that listing is made, not when every
        listing and their table are (the table's check of repeated keys gates the screening and search)."""
        return self.pool_listing(shard) if self.pool_listing_table else self.paths.pool_manifest

    def pool_embedded_block(self, shard) -> dict[str, int]:
        """Which block of pool_embedded's rows the job embeds: its block of the manifest, or all of its listing."""
        if self.pool_listing_table:
            return {"shard": 0, "shards": 1}
        return {"shard": int(shard), "shards": self.pool_jobs}

    def pool_input(self) -> dict[str, str]:
        """The option and file that name the pool to a shard's job: the manifest, or a shard table
        (the parts', or the listings')."""
        table = self.pool_parts_table or self.pool_listing_table
        if table:
            return {"flag": "--shard-table", "path": table}
        return {"flag": "--pool", "path": self.paths.pool_manifest}

    def pool_shard_embeddings(self, kind: str, shard) -> list[str]:
        """A job's block of image or caption embeddings: none to name where a shard table lists the
        parts, the joined file of a one-part clip-retrieval folder, else what embed_pool wrote."""
        if self.pool_parts_table:
            return []
        if self.pool_clip_retrieval:
            return [self.paths.pool_image_embeddings if kind == "images" else self.paths.pool_caption_embeddings]
        return [f"{self.paths.results}/embed/pool_{kind}/shard{shard}.npy"]

    def pool_shard_excluded(self, shard) -> str:
        return f"{self.paths.results}/pool/excluded/shard{shard}.csv"

    def retrieval_round(self, method: str, round_) -> str:
        """The folder of a retrieval method's search round: each shard's candidates, and the merge."""
        return f"{self.paths.results}/retrieve/{method}/round{round_}"

    def pool_shard_files(self) -> list[str] | str:
        """A folder of shards is one input; a glob pattern is the tars it matches."""
        shards = self.config["pool"]["manifest"]
        return shards if Path(shards).is_dir() else sorted(glob.glob(shards))

    @property
    def listed_splits(self) -> list[str]:
        """Dataset splits given as class-per-folder trees or torchvision datasets, which a job lists
        into a manifest (listing a million files while the DAG is built would slow every dry run)."""
        dataset = self.config["dataset"]
        return [
            split
            for split in ("train", "val")
            if dataset[split] is not None and (isinstance(dataset[split], dict) or not is_manifest(dataset[split]))
        ]

    def dataset_root(self, split: str) -> str:
        """The folder a listed split is read from: its tree, or the root of its torchvision dataset."""
        value = self.config["dataset"][split]
        return value["torchvision"]["root"] if isinstance(value, dict) else value

    def listing_options(self, split: str) -> dict:
        """augbench.dataset's options for a split read by a torchvision dataset class (none for a tree)."""
        value = self.config["dataset"][split]
        if not isinstance(value, dict):
            return {}
        layout = value["torchvision"]
        splits = layout["split"] if isinstance(layout["split"], list) else [layout["split"]]
        options = [f"{key}={json.dumps(option)}" for key, option in layout["options"].items()]
        return {"torchvision": layout["name"], "split": splits, "option": options}

    def dataset_manifest(self, split: str, results: str | None = None) -> str:
        """The manifest of a split as the subset and evaluation read it: with dataset.split, the
        job's split of dataset.train; else dataset.<split> itself or the listing of its tree."""
        results = results or self.paths.results
        if self.config["dataset"]["split"] is not None and split in ("train", "val"):
            return f"{results}/data/split/{split}.csv"
        return self.listed_manifest(split, results)

    def listed_manifest(self, split: str, results: str | None = None) -> str:
        results = results or self.paths.results
        if split in self.listed_splits:
            return f"{results}/data/{split}.csv"
        return self.config["dataset"][split]

    def added_manifest(self, method: str) -> str:
        return f"{self.paths.results}/added/{method}/manifest.csv"

    @property
    def evaluation_sets(self) -> dict[str, dict]:
        return self.config["evaluation_sets"]

    def evaluation_set_inputs(self) -> list[str]:
        """What the evaluation sets read (images and class lists), so that a change reruns evaluation."""
        paths = [entry["images"] for entry in self.evaluation_sets.values()]
        return paths + [entry["classes"] for entry in self.evaluation_sets.values() if entry["classes"]]

    def evaluation_set_options(self) -> dict:
        """augbench.evaluate's options naming every evaluation set and the class list of each that has one."""
        return {
            "evaluation_set": [f"{name}={entry['images']}" for name, entry in self.evaluation_sets.items()],
            "evaluation_set_classes": [
                f"{name}={entry['classes']}" for name, entry in self.evaluation_sets.items() if entry["classes"]
            ],
        }

    def benchmark(self, rule: str, job: str, root: str | None = None) -> str:
        """Where a job's record of what it used goes (augbench.usage): <root>/<rule>/[<method>/]<job>.tsv, as
        augbench.cost reads it."""
        return f"{root or self.paths.benchmarks}/{rule}/{job}.tsv"

    def seed_job(self) -> tuple[list, str]:
        """The seeds of one training or evaluation job, and its name in logs and benchmarks: the
        ``{seed}`` wildcard (a job per seed), or every seed (classifier.seeds_in_one_job)."""
        if self.config["classifier"]["seeds_in_one_job"]:
            return self.seeds, "seeds" + "-".join(str(seed) for seed in self.seeds)
        return ["{seed}"], "seed{seed}"

    def pretrain_benchmark(self, rule: str, model: str) -> str:
        """A pre-training job's benchmark, named after the model it makes (one per model folder)."""
        name = re.sub(r"[^\w.-]+", "_", self.local_model(self.config[model]["model"]).strip("/"))
        return self.benchmark(rule, name, PRETRAIN_BENCHMARKS)

    # -- the methods -------------------------------------------------------------------

    def methods_of(self, kind: str) -> list[str]:
        return [name for name, params in self.methods.items() if params["kind"] == kind]

    def added_per_class(self, method: str) -> int | None:
        """Images a retrieval or generation method adds per class: its own per_class (a sweep over
        it is a few registry entries), else augment.per_class (null: 1:1 with the real ones)."""
        own = self.methods[method].get("per_class")
        return self.config["augment"]["per_class"] if own is None else own

    def adds_images(self, method: str) -> bool:
        """Whether a method trains on more than the subset (every method but the baseline)."""
        params = self.methods[method]
        return params["kind"] != "real" or params["real_multiplier"] > 1

    def methods_adding_images(self) -> list[str]:
        return [method for method in self.methods if self.adds_images(method)]

    def filters_by_clip_score(self, method: str) -> bool:
        params = self.methods[method]
        return params.get("min_clip_score") is not None or params.get("min_clip_score_file") is not None

    def searches_pool(self, method: str) -> bool:
        """Whether a retrieval method searches the pool's embeddings here (not a kNN service's index)."""
        return self.methods[method]["backend"] == "local"

    def local_retrieval_methods(self) -> list[str]:
        return [name for name in self.methods_of("retrieve") if self.searches_pool(name)]

    def downloads(self, method: str) -> bool:
        """Whether a retrieval method's results are URLs that a download step fetches into files."""
        params = self.methods[method]
        enabled = params["download"]["enabled"]
        return params["backend"] == "clip_service" if enabled is None else enabled

    def retrieval_methods(self, backend: str, download: bool) -> list[str]:
        """The retrieval methods of a backend whose results are downloaded (or not)."""
        return [
            name
            for name in self.methods_of("retrieve")
            if self.methods[name]["backend"] == backend and self.downloads(name) == download
        ]

    def download_methods(self) -> list[str]:
        """The retrieval methods whose results are URLs, downloaded and then screened."""
        return [name for name in self.methods_of("retrieve") if self.downloads(name)]

    def personalisation_of(self, method: str) -> dict | None:
        return self.methods[method].get("personalise") or None

    def personalised_methods(self) -> list[str]:
        return [name for name in self.methods_of("generate") if self.personalisation_of(name)]

    def clusters(self, method: str) -> int:
        learned = self.personalisation_of(method)
        return learned["clusters"] if learned else 1

    def personalisation_files(self, method: str) -> list[str]:
        """The personalisation artefacts a generation method samples with, one per shard."""
        learned = self.personalisation_of(method)
        if not learned:
            return []
        shards = learned["shards"] if learned["target"] in registry.PER_CLASS_TARGETS else 1
        return [f"{self.paths.results}/personalised/{method}/shard{shard}.safetensors" for shard in range(shards)]

    def learned_artefacts(self) -> dict[str, list[str]]:
        """Each personalised method's artefacts, whose size the summary reports."""
        return {method: self.personalisation_files(method) for method in self.personalised_methods()}

    def generation_shards(self, method: str) -> list[str]:
        """The manifests of a generation method's jobs, one per shard of its images."""
        return [
            f"{self.paths.results}/added/{method}/shards/shard{shard}.csv"
            for shard in range(self.methods[method]["shards"])
        ]

    # -- shared jobs -------------------------------------------------------------------

    def pool_captions_searched(self) -> bool:
        return any(self.methods[name]["index"] == "caption" for name in self.local_retrieval_methods())

    def screens_copies(self) -> bool:
        """Whether images are screened for copies of evaluation and training images: a pool
        searched here, or the downloads of URL results."""
        return bool(self.local_retrieval_methods() or self.download_methods())

    def service_query_embeddings(self, method: str) -> list[str]:
        """The embeddings sent as queries when the workflow embeds them (service.embed: local)."""
        params = self.methods[method]
        if params["service"]["embed"] != "local":
            return []
        return [self.paths.subset_embeddings if params["query"] == "image" else self.paths.class_prompts]

    def embeds_subset(self) -> bool:
        """Whether a job reads the subset's CLIP image embeddings: image-query retrieval (here, or
        embedded here for a kNN service), clustered personalisation, or screening for copies of
        training images."""
        return (
            any(
                self.methods[name]["query"] == "image"
                and (self.searches_pool(name) or self.service_query_embeddings(name))
                for name in self.methods_of("retrieve")
            )
            or any(self.clusters(name) > 1 for name in self.personalised_methods())
            or self.screens_copies()
            and self.config["contamination"]["train_threshold"] is not None
        )

    def copy_check_images(self, check: str) -> dict[str, str]:
        """The images a copy check (eval, train) compares with: their manifest and CLIP embeddings."""
        if check == "eval":
            return {"manifest": self.paths.val_manifest, "embeddings": self.paths.val_embeddings}
        return {"manifest": self.paths.subset, "embeddings": self.paths.subset_embeddings}

    def copy_check_threshold(self, check: str) -> float | str | None:
        """A copy check's contamination.<check>_threshold: a number, auto, or None (off)."""
        return self.config["contamination"][f"{check}_threshold"]

    def calibrated_checks(self) -> list[str]:
        """The copy checks whose threshold is calibrated (auto), where anything is screened for copies."""
        if not self.screens_copies():
            return []
        return [check for check in COPY_CHECKS if self.copy_check_threshold(check) == AUTO]

    def copy_calibration(self, check: str) -> str:
        """The JSON of a calibrated copy check (augbench.copy_calibration), which its screening reads."""
        return f"{self.paths.results}/contamination/{check}_threshold.json"

    def copy_references(self) -> dict[str, str]:
        """The images pool images must not copy (manifest and CLIP embeddings), for each check a threshold
        turns on, and the calibrated threshold of each check set to auto."""
        references = {}
        for check in COPY_CHECKS:
            threshold = self.copy_check_threshold(check)
            if threshold is None:
                continue
            references |= {f"{check}_{kind}": path for kind, path in self.copy_check_images(check).items()}
            if threshold == AUTO:
                references[f"{check}_calibration"] = self.copy_calibration(check)
        return references

    def copy_thresholds(self) -> dict[str, float]:
        """The screening jobs' thresholds: the checks set to a number (an auto one's is read from its
        calibration, a null one is off)."""
        return {
            f"{check}_threshold": self.copy_check_threshold(check)
            for check in COPY_CHECKS
            if self.copy_check_threshold(check) not in (None, AUTO)
        }

    def calibration_options(self) -> dict:
        """Options of a copy check's calibration: the share of copies to catch, the images that get
        copies, and the CLIP that embeds them (the one that embedded the reference images)."""
        contamination = self.config["contamination"]
        return {
            "catch_share": contamination["catch_share"],
            "images": contamination["calibration_images"],
            "transforms": ",".join(contamination["copy_transforms"]),
            **self.config["clip"],
            "device": self.config["device"],
        }

    def copy_check_report(self) -> dict[str, list[str]]:
        """augbench.aggregate's options naming each copy check's threshold (a number, or off) or its
        calibration; none where nothing is screened for copies."""
        if not self.screens_copies():
            return {}
        fixed = {check: self.copy_check_threshold(check) for check in COPY_CHECKS}
        fixed = {check: threshold for check, threshold in fixed.items() if threshold != AUTO}
        return {
            "copy_threshold": [f"{check}={'off' if value is None else value}" for check, value in fixed.items()],
            "copy_calibration": [f"{check}={self.copy_calibration(check)}" for check in self.calibrated_checks()],
        }

    def quality_tables(self) -> list[str]:
        """The per-class CLIP-score filter table of each retrieval and generation method."""
        return [
            f"{self.paths.results}/added/{method}/quality.csv"
            for method in self.local_retrieval_methods() + self.methods_of("generate")
        ]

    def download_failure_lists(self) -> dict[str, str]:
        """Method -> the list of its failed downloads."""
        return {name: f"{self.paths.results}/added/{name}/download_failures.csv" for name in self.download_methods()}

    def download_exclusion_lists(self) -> dict[str, str]:
        """Method -> the list of its downloaded images that screening left out."""
        return {name: f"{self.paths.results}/added/{name}/excluded.csv" for name in self.download_methods()}

    def unreadable_lists(self) -> dict[str, list[str]]:
        """Stage -> the lists of images that stage could not read and skipped."""
        results = self.paths.results
        lists = {"subset draw": [self.paths.subset_unreadable], "validation": [self.paths.val_unreadable]}
        for method in self.methods_of("real"):
            if self.adds_images(method):
                lists[f"real extras of {method}"] = [f"{results}/added/{method}/unreadable.csv"]
        if self.local_retrieval_methods() and self.pool_parts_table:
            pass  # a part's zero rows are left out by each search; no job lists them
        elif self.local_retrieval_methods() and self.pool_clip_retrieval:
            lists["pool"] = [self.paths.pool_clip_retrieval_unreadable]
        elif self.local_retrieval_methods():
            lists["pool"] = [
                f"{results}/embed/pool_images/shard{shard}.unreadable.csv" for shard in range(self.pool_jobs)
            ]
        return lists

    def gpus(self) -> dict[str, int]:
        """GPUs a job of each GPU rule asks for, and as ``personalise/<method>`` a personalised
        method's own where it asks for more than one (the cost table takes a rule and method's first)."""
        own = {f"personalise/{method}": self.personalise_processes(method) for method in self.personalised_methods()}
        return self.gpus_of(self.config["classifier"]) | {key: count for key, count in own.items() if count > 1}

    @staticmethod
    def gpus_of(classifier: dict) -> dict[str, int]:
        """GPUs a job of each GPU rule asks for; the rules take them from here, and the cost
        table counts GPU hours with them."""
        one = ["pretrain_clip", "pretrain_diffusion", "embed_pool", "embed_pool_captions", "embed_subset"]
        one += ["embed_val", "embed_added", "screen_downloads", "calibrate_copy_threshold", "personalise", "generate"]
        # faiss's exact screening and each shard's search run on the GPU where faiss has GPU support.
        one += ["screen_pool", "search_pool_shard"]
        return {**dict.fromkeys(one, 1), "train": classifier.get("processes", 1)}

    def pretrain_benchmarks(self) -> list[str]:
        """The pre-training jobs' benchmarks, which the cost table reads where they exist: as inputs,
        a missing one (models made before, or elsewhere) would pre-train again."""
        if not self.miniworld["pretrain"]:
            return []
        return [
            self.pretrain_benchmark("pretrain_clip", "clip"),
            self.pretrain_benchmark("pretrain_diffusion", "diffusion"),
        ]

    # -- models ------------------------------------------------------------------------

    def local_model(self, reference: str | None) -> str | None:
        """The folder or file a model reference names, if it is local; None for a hub id.

        A local model is an input of the jobs that use it, so the mini-world's pre-training
        rules run first; a hub id is fetched by the job itself.
        """
        if reference is None:
            return None
        path = reference.removeprefix("local-dir:")
        if reference.startswith("local-dir:") or os.path.isabs(path) or path.startswith("."):
            return path
        if self.miniworld["enabled"] and Path(path).is_relative_to(self.miniworld["root"]):
            return path
        # The pre-training rules write these, whatever data they train on.
        if self.miniworld["pretrain"] and reference in (
            self.config["clip"]["model"],
            self.config["diffusion"]["model"],
        ):
            return path
        return path if Path(path).exists() else None

    def clip_files(self) -> list[str]:
        references = (self.config["clip"]["model"], self.config["clip"]["pretrained"])
        return [path for path in map(self.local_model, references) if path]

    def own_diffusion(self, method: str | None) -> dict:
        """The diffusion keys a generation method sets for itself (none for None or another kind)."""
        return (self.methods[method].get("diffusion") or {}) if method is not None else {}

    def diffusion_of(self, method: str | None = None) -> dict:
        """The diffusion settings a method's jobs run (``diffusion_settings``)."""
        return diffusion_settings(self.config, self.methods[method] if method is not None else None)

    def diffusion_key(self, method: str | None, key: str) -> str:
        """The config key a method's diffusion setting comes from: its own entry's, or diffusion's."""
        return f"methods.{method}.diffusion.{key}" if key in self.own_diffusion(method) else f"diffusion.{key}"

    @property
    def diffusion_backend(self) -> str | None:
        """The family of config diffusion's model (see diffusion_backend_of)."""
        return self.diffusion_backend_of(None)

    def diffusion_backend_of(self, method: str | None) -> str | None:
        """The family of a method's diffusion model (its backend, or its model_index.json where it can
        be read now); None until the pre-training rules or the jobs' download make the pipeline.

        A method that names a model of its own must have a family known now, as it is compared
        with the experiment's own model: a hub id not in the local hub cache needs its backend."""
        diffusion = self.diffusion_of(method)
        model, model_key = diffusion["model"], self.diffusion_key(method, "model")
        try:
            family = backend_name(model, diffusion["revision"], diffusion["backend"], required=False)
        except ValueError as error:
            raise ConfigError(f"config {model_key}: {error}") from None
        # A local folder not there yet is check_models' to report.
        own_hub_model = model != self.config["diffusion"]["model"] and self.local_model(model) is None
        if family is None and own_hub_model:
            raise ConfigError(
                f"config methods.{method}.diffusion.backend: the family of {model_key} {model!r} cannot be read "
                "offline (not a pipeline folder, nor a hub id in the local hub cache); set it to one of "
                f"{list(PIPELINES)}"
            )
        return family

    def diffusion_files(self, method: str | None = None) -> list[str]:
        """A method's diffusion pipeline folder, where it is local (an input of its jobs)."""
        path = self.local_model(self.diffusion_of(method)["model"])
        return [path] if path else []

    # -- command-line options ------------------------------------------------------------

    def clip_filter_options(self, method: str) -> dict:
        """Options of the CLIP-score filter; none where a method does not filter, so its jobs stay as they were."""
        if not self.filters_by_clip_score(method):
            return {}
        params = self.methods[method]
        options = {key: params[key] for key in ("min_clip_score", "min_clip_score_file")}
        if params["kind"] == "retrieve":
            return {**options, "class_prompts": self.paths.class_prompts}
        return {
            **options,
            "regenerate_rounds": params["regenerate_rounds"],
            "class_embeddings": self.paths.class_prompts,
            "clip_model": self.config["clip"]["model"],
            "clip_pretrained": self.config["clip"]["pretrained"],
        }

    def clip_filter_inputs(self, method: str) -> dict:
        """The class prompts' embeddings and the thresholds file (so that editing it reruns the method)."""
        if not self.filters_by_clip_score(method):
            return {}
        params = self.methods[method]
        inputs = {"class_prompts_scored": self.paths.class_prompts}
        if params["min_clip_score_file"] is not None:
            inputs["min_clip_score_file"] = params["min_clip_score_file"]
        if params["kind"] == "generate":
            inputs["clip_scorer"] = self.clip_files()
        return inputs

    def zero_shot_options(self, method: str) -> dict:
        """Zero-shot labelling embeds the generated images with CLIP and compares them with the class prompts."""
        if self.methods[method]["zero_shot_keep"] is None:
            return {}
        return {
            "class_embeddings": self.paths.class_prompts,
            "clip_model": self.config["clip"]["model"],
            "clip_pretrained": self.config["clip"]["pretrained"],
        }

    def zero_shot_inputs(self, method: str) -> dict:
        if self.methods[method]["zero_shot_keep"] is None:
            return {}
        return {"class_prompts": self.paths.class_prompts, "clip": self.clip_files()}

    def personalisation_options(self, method: str) -> dict:
        """A method's personalise entry as its job's options."""
        learned = self.personalisation_of(method)
        defaults = schema()["$defs"]["personalisation"]["properties"]
        diffusion = self.diffusion_of(method)
        return {
            "model": diffusion["model"],
            "revision": diffusion["revision"],
            # Left out where not set, so the jobs of configs from before these settings stay as they were.
            "backend": None if diffusion["backend"] == "auto" else diffusion["backend"],
            "text_length": diffusion["text_length"],
            "image_size": diffusion["image_size"],
            "template": self.config["prompt_template"],
            "device": self.config["device"],
            "embeddings": self.paths.subset_embeddings if learned["clusters"] > 1 else None,
            "shards": len(self.personalisation_files(method)),
            **{
                key: value
                for key, value in learned.items()
                if key not in PERSONALISE_JOB_SETTINGS
                and not (key in PERSONALISE_RUN_SETTINGS and value == defaults[key]["default"])
            },
        }

    def generation_options(self, method: str) -> dict:
        """Options of a generation method's jobs (the shard is the job's own)."""
        params = self.methods[method]
        learned = self.personalisation_of(method)
        checks = {}
        if learned:
            uses_tokens = learned["target"] in registry.TOKEN_TARGETS
            checks = {"personalised": learned["target"], "vectors": learned["vectors"] if uses_tokens else None}
        diffusion = self.diffusion_of(method)
        return {
            **diffusion,
            "backend": None if diffusion["backend"] == "auto" else diffusion["backend"],
            "template": self.config["prompt_template"],
            "per_class": self.added_per_class(method),
            "device": self.config["device"],
            "method": method,
            "shards": params["shards"],
            **{key: params[key] for key in GENERATE_OPTIONS},
            "personalisation": self.personalisation_files(method) or None,
            **checks,
            **self.zero_shot_options(method),
            **self.clip_filter_options(method),
        }

    def retrieval_options(self, method: str, stage: str = "search") -> dict:
        """Options of a method's shard searches (``stage`` "search") or of their merge ("merge")."""
        params = self.methods[method]
        options = {
            "per_class": self.added_per_class(method),
            "overfetch": params["overfetch"],
            "dedup": params["dedup"],
            "search": params["search"],
            "nprobe": params["nprobe"],
            "index_memory_gb": self.config["pool"]["index_memory_gb"],
            # A pool of URLs: candidates for the download step, more than the quota.
            "candidate_factor": params["download"]["factor"] if self.downloads(method) else None,
            # Image queries take their class from the subset's rows.
            "query_manifest": self.paths.subset if params["query"] == "image" else None,
            **self.clip_filter_options(method),
        }
        if stage == "merge":  # the shards' searches tell which rows pass the CLIP-score filter
            options.pop("class_prompts", None)
        return options

    def service_options(self, method: str) -> dict:
        params = self.methods[method]
        service = params["service"]
        queries = self.service_query_embeddings(method)
        return {
            "url": service["url"],
            "indice_name": service["indice_name"],
            "query": params["query"],
            "template": self.config["prompt_template"],
            "embeddings": queries[0] if queries else None,
            # Captions are the service's text index.
            "modality": "text" if params["index"] == "caption" else "image",
            "per_class": self.added_per_class(method),
            "factor": params["download"]["factor"],
            "overfetch": params["overfetch"],
            "max_images": service["max_images"],
            "aesthetic_score": service["aesthetic_score"],
            "aesthetic_weight": service["aesthetic_weight"],
            "use_safety_model": service["use_safety_model"],
            "use_violence_detector": service["use_violence_detector"],
            "deduplicate": service["deduplicate"],
        }

    def download_options(self, method: str) -> dict:
        download = self.methods[method]["download"]
        return {
            "per_class": self.added_per_class(method),
            **{key: download[key] for key in ("threads", "timeout", "retries", "image_size")},
        }

    def personalise_processes(self, method: str) -> int:
        """GPUs of one node a method's personalisation job uses."""
        return self.personalisation_of(method)["processes"]

    def personalise_launcher(self, method: str) -> str:
        """More than one process: accelerate over the node's GPUs, launched by torchrun (as training is)."""
        return self.launcher(self.personalise_processes(method))

    @staticmethod
    def launcher(processes: int) -> str:
        return "python" if processes == 1 else f"torchrun --standalone --nproc_per_node {processes}"

    def train_launcher(self) -> str:
        """More than one process: DDP over the node's GPUs, launched by torchrun."""
        return self.launcher(self.config["classifier"]["processes"])

    def train_options(self) -> dict:
        classifier = self.config["classifier"]
        job_settings = ("processes", "seeds_in_one_job")
        return {**{k: v for k, v in classifier.items() if k not in job_settings}, "device": self.config["device"]}

    def provenance(self) -> dict:
        """What of the config produced the results: the models and every method's resolved entry."""
        config = self.config
        return {
            "experiment": config["experiment"],
            "dataset": config["dataset"],
            "evaluation_sets": config["evaluation_sets"],
            "clip": {key: config["clip"][key] for key in ("model", "pretrained")},
            "diffusion": {
                key: config["diffusion"][key] for key in ("model", "revision", "backend", "text_length", "dtype")
            },
            "classifier": config["classifier"],
            "subset": config["subset"],
            "augment": config["augment"],
            "contamination": config["contamination"],
            "pool_safety": {key: config["pool"][key] for key in ("safety_column", "drop_safety_values")},
            "prompt_template": config["prompt_template"],
            "seeds": self.seeds,
            "methods": self.methods,
        }

    # -- checks ------------------------------------------------------------------------

    def check(self) -> None:
        """Checks that a JSON schema cannot express; each names the key at fault."""
        config = self.config
        subset = config["subset"]
        if sum(subset[key] is not None for key in ("per_class", "fraction", "file_list")) != 1:
            raise ConfigError(
                "config subset: set exactly one of subset.per_class and subset.fraction "
                "(or neither, with subset.file_list)"
            )
        self.check_dataset_split()
        for name, params in self.methods.items():
            self.check_method(name, params)
        if self.miniworld["pretrain"]:
            self.check_pretraining()
        self.check_paths()
        check_safety_column(config["pool"]["manifest"], config["pool"]["safety_column"])
        pool = config["pool"]
        if pool["shards"] % pool["shards_per_job"]:
            raise ConfigError(
                f"config pool.shards_per_job: {pool['shards_per_job']} does not divide pool.shards ({pool['shards']})"
            )
        if (
            pool["embeddings_layout"] == "datacomp"
            and pool["embeddings"]
            and config["clip"]["model"]
            not in (
                "ViT-L-14",
                "ViT-B-32",
            )
        ):
            raise ConfigError(
                f"config clip.model: DataComp ships ViT-L-14 and ViT-B-32 embeddings, not {config['clip']['model']}'s"
            )
        self.check_models()
        weights = config["classifier"]["init_weights"]
        if weights and not Path(weights).is_file():
            raise ConfigError(f"config classifier.init_weights: {weights} is not a file")
        check_names(config)

    def check_method(self, name: str, params: dict) -> None:
        key = f"config methods.{name}"
        try:
            if params["kind"] == "generate":
                learned = params["personalise"] or {}
                if learned:
                    registry.check_personalisation(learned["target"], learned["clusters"], learned["shards"])
                registry.check_generation(
                    params["prompt"],
                    params["strength"],
                    params["zero_shot_keep"],
                    learned.get("target"),
                    self.filters_by_clip_score(name),
                )
                registry.check_backend(
                    self.diffusion_backend_of(name),
                    params["scheduler"],
                    params["guidance_scale"],
                    params["true_cfg_scale"],
                )
        except registry.SettingError as error:
            raise ConfigError(f"{key}.{error.key}: {error.message}") from None
        if params["kind"] in ("retrieve", "generate"):
            path = params["min_clip_score_file"]
            if path is not None and not Path(path).is_file():
                raise ConfigError(f"{key}.min_clip_score_file: {path} does not exist")
        if params["kind"] == "retrieve":
            self.check_retrieval_method(name, params)

    def check_retrieval_method(self, name: str, params: dict) -> None:
        """A kNN service's results are URLs: it needs its endpoint, and a download."""
        key = f"config methods.{name}"
        if params["backend"] != "clip_service":
            return
        if not params["service"]["url"]:
            raise ConfigError(
                f"{key}.service.url: backend clip_service needs the service's kNN endpoint "
                "(http://host:port/knn-service)"
            )
        if params["download"]["enabled"] is False:
            raise ConfigError(
                f"{key}.download.enabled: a kNN service returns URLs, which are downloaded; leave it null or true"
            )
        if self.filters_by_clip_score(name):
            raise ConfigError(
                f"{key}.min_clip_score: the CLIP-score filter scores the pool's embeddings here; "
                "a kNN service's results have none (use the service's own filters)"
            )

    def check_dataset_split(self) -> None:
        """One tree split into training and validation images has no separate val."""
        dataset = self.config["dataset"]
        if dataset["split"] is None:
            if dataset["val"] is None:
                raise ConfigError(
                    "config dataset.val: give the validation images, or dataset.split "
                    "to split dataset.train into training and validation images"
                )
            return
        if dataset["val"] is not None:
            raise ConfigError(
                "config dataset.val: with dataset.split the validation images are the rest "
                "of dataset.train; set dataset.val: null"
            )
        if self.miniworld["enabled"]:
            raise ConfigError(
                "config dataset.split: the mini-world makes its own training and validation sets; "
                "set dataset.split: null"
            )

    def check_pretraining(self) -> None:
        """The pre-training rules write CLIP as an open_clip folder and train at one resolution."""
        clip = self.config["clip"]
        if not clip["model"].startswith("local-dir:"):
            raise ConfigError(
                "config clip.model: with miniworld.pretrain the workflow trains CLIP into a folder; "
                f"name it local-dir:<folder>, not {clip['model']!r}"
            )
        if clip["pretrained"] is not None:
            raise ConfigError(
                "config clip.pretrained: with miniworld.pretrain the trained folder holds the weights; set it to null"
            )
        try:
            check_sizes(
                self.miniworld["image_size"],
                self.miniworld["diffusion"]["vae_channels"],
                self.miniworld["diffusion"]["unet_channels"],
            )
        except registry.SettingError as error:
            raise ConfigError(f"config miniworld.{error.key}: {error.message}") from None

    def pool_paths(self) -> dict[str, str]:
        """The pool's data paths the config names and the workflow reads."""
        paths = {}
        if self.pool_shards or not self.pool_clip_retrieval:
            paths["pool.manifest"] = self.config["pool"]["manifest"]
        if self.pool_clip_retrieval:
            paths["pool.embeddings"] = self.pool_clip_retrieval
        return paths

    def check_paths(self) -> None:
        dataset, subset = self.config["dataset"], self.config["subset"]
        paths = {
            "dataset.classes": dataset["classes"],
            "dataset.train": self.dataset_root("train"),
            "dataset.val": self.dataset_root("val"),
            **self.pool_paths(),
        }
        for name, entry in self.evaluation_sets.items():
            paths[f"evaluation_sets.{name}.images"] = entry["images"]
            if entry["classes"] is not None and not Path(entry["classes"]).is_file():
                # A class list ships with the project (resources/), not with the data.
                raise ConfigError(f"config evaluation_sets.{name}.classes: {entry['classes']} does not exist")
        paths = {key: path for key, path in paths.items() if path is not None}
        if subset["file_list"] is not None and not Path(subset["file_list"]).is_file():
            raise ConfigError(f"config subset.file_list: {subset['file_list']} does not exist")
        if not self.miniworld["enabled"]:
            for key, path in paths.items():
                if not Path(path).exists() and not glob.glob(path):
                    raise ConfigError(f"config {key}: {path} does not exist")
            return
        root = Path(self.miniworld["root"])
        for key, path in paths.items():
            if not Path(path).is_relative_to(root):
                raise ConfigError(
                    f"config {key}: {path} is not under miniworld.root {root}; "
                    "with miniworld.enabled the data comes from the mini-world rules"
                )

    def check_models(self) -> None:
        """A local model the config names must exist unless the workflow trains it (hub ids are fetched by the jobs)."""
        if self.miniworld["pretrain"]:
            return
        hint = (
            "; set miniworld.pretrain: true to train it with the mini-world's rules"
            if self.miniworld["enabled"]
            else ""
        )
        models = {key: self.config[key.split(".")[0]][key.split(".")[1]] for key in ("clip.model", "clip.pretrained")}
        models["diffusion.model"] = self.config["diffusion"]["model"]
        for method in self.methods_of("generate"):
            models[self.diffusion_key(method, "model")] = self.diffusion_of(method)["model"]
        for key, model in models.items():
            path = self.local_model(model)
            if path and not Path(path).exists():
                raise ConfigError(f"config {key}: {path} does not exist{hint}")


def diffusion_settings(config: dict, method: dict | None) -> dict:
    """The diffusion settings a method's jobs run: config diffusion with the keys of the method's
    own ``diffusion`` entry in their place (config diffusion itself for None)."""
    return {**config["diffusion"], **((method or {}).get("diffusion") or {})}


def read_registry(path: str) -> dict:
    """A method registry file (name -> entry). A relative path is looked up in the working
    directory, then in the augbench checkout, so ``configs/methods.yaml`` is found from any folder."""
    found = next((folder / path for folder in (Path.cwd(), SCHEMA.parents[2]) if (folder / path).is_file()), None)
    if found is None:
        raise ConfigError(f"config methods_file: {path} does not exist")
    check_duplicate_keys([str(found)])
    registry_ = yaml.safe_load(found.read_text())
    if not isinstance(registry_, dict) or not all(isinstance(entry, dict) for entry in registry_.values()):
        raise ConfigError(f"config methods_file: {path} is not a mapping of method names to entries")
    return registry_


def merge_registry(shared: dict, own: dict) -> dict:
    """The shared registry with a config's own entries merged in, key by key (a personalise
    mapping too): an entry of a new name adds a method, and null removes one."""
    merged = json.loads(json.dumps(shared))
    for name, entry in own.items():
        if entry is None:
            merged.pop(name, None)
        elif name in merged and isinstance(entry, dict):
            for key, value in entry.items():
                base = merged[name].get(key)
                merged[name][key] = {**base, **value} if isinstance(base, dict) and isinstance(value, dict) else value
        else:
            merged[name] = entry
    return merged


def check_safety_column(manifest: str, column: str | None) -> None:
    """A safety column the config names must be in a CSV pool manifest (read from its header,
    where it exists yet); other layouts are checked by the job that reads them."""
    pool = Path(manifest)
    if column is None or pool.suffix != ".csv" or not pool.is_file() or pool.stat().st_size == 0:
        return
    with open(pool, newline="") as handle:
        header = next(csv.reader(handle), [])
    if column not in header:
        raise ConfigError(
            f"config pool.safety_column: {column!r} is not a column of {manifest} (its columns: {header}); "
            "null honours LAION's NSFW column where a pool has one"
        )


# -- names the libraries know ----------------------------------------------------------------


def names_cache() -> Path:
    """Where the libraries' names are kept: the user's cache folder (``$XDG_CACHE_HOME``, else
    ``~/.cache``), shared by every working directory, so a new run folder does not import them again."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("augbench")) / "library-names.json"


def library_names(cache: Path | None = None) -> dict[str, list]:
    """The names torchvision and open_clip know: classifier architectures, CLIP models and their
    pretrained tags. Importing both takes seconds, so the lists are kept in ``cache`` (by default
    :func:`names_cache`) per version of the libraries, and later dry runs read them from there."""
    versions = {package: importlib.metadata.version(package) for package in ("torchvision", "open_clip_torch")}
    cache = names_cache() if cache is None else cache
    try:
        stored = json.loads(cache.read_text())
        if stored.get("versions") == versions:
            return stored
    except (ValueError, OSError):
        pass  # none yet, or a broken one: made again
    import open_clip
    import torchvision

    names = {
        "versions": versions,
        "classifiers": sorted(torchvision.models.list_models()),
        "clip_models": sorted(open_clip.list_models()),
        "clip_pretrained": sorted([model, tag] for model, tag in open_clip.list_pretrained()),
    }
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.with_name(f"{cache.name}.{os.getpid()}.partial")  # several runs may write at once
        partial.write_text(json.dumps(names))
        partial.replace(cache)
    except OSError:
        pass  # a read-only folder: the names are looked up again next time
    return names


def check_names(config: dict, names: dict | None = None) -> None:
    """The names a config gives must be ones the libraries know (a typo found before any GPU hour)."""
    names = names or library_names()
    arch = config["classifier"]["arch"]
    known = [*names["classifiers"], *SMALL_CNNS]
    if arch not in known:
        close = [name for name in known if name.startswith(re.sub(r"\d+$", "", arch))][:8]
        raise ConfigError(
            f"config classifier.arch: {arch!r} is neither a torchvision model"
            f" nor one of augbench's small CNNs {sorted(SMALL_CNNS)}"
            + (f" (models of that family: {close})" if close else " (see torchvision.models.list_models())")
        )
    model, pretrained = config["clip"]["model"], config["clip"]["pretrained"]
    if model.startswith(("local-dir:", "hf-hub:")):
        return
    if model not in names["clip_models"]:
        raise ConfigError(
            f"config clip.model: {model!r} is not an open_clip model (open_clip.list_models()), "
            "an hf-hub:<repo> or a local-dir:<folder>"
        )
    tags = [tag for name, tag in names["clip_pretrained"] if name == model]
    if pretrained is not None and pretrained not in tags and not Path(pretrained).is_file():
        raise ConfigError(
            f"config clip.pretrained: {pretrained!r} is neither a pretrained tag of {model} ({tags}) nor a weights file"
        )
