import csv
import glob
import json
import os
import re
import shlex
from pathlib import Path

import jsonschema
import yaml
from snakemake.utils import validate

SCHEMA = Path(workflow.current_basedir).parent / "schemas" / "config.schema.yaml"


def check_schema(config):
    """Stop at the first schema violation with one line: the key at fault and what is allowed.

    Snakemake's own validate() (which fills the defaults in) reports a violation over
    many lines with the whole offending mapping; this names the key first.
    """
    validator = jsonschema.Draft202012Validator(yaml.safe_load(SCHEMA.read_text()))
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is not None:
        key = ".".join(str(part) for part in error.absolute_path) or "(top level)"
        raise ValueError(f"config {key}: {error.message}")


class UniqueKeyLoader(yaml.SafeLoader):
    """YAML that refuses a key given twice in one mapping (plain YAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise ValueError(
                    f"config file {key_node.start_mark.name} line {key_node.start_mark.line + 1}: "
                    f"key {key!r} is given twice in the same mapping (e.g. two methods of one name)"
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def check_duplicate_keys(paths):
    for path in paths:
        with open(path) as handle:
            yaml.load(handle, Loader=UniqueKeyLoader)


check_duplicate_keys(workflow.configfiles)
check_schema(config)
validate(config, schema=str(SCHEMA))

RESULTS = f"results/{config['experiment']}"
LOGS = f"logs/{config['experiment']}"
BENCHMARKS = f"benchmarks/runs/{config['experiment']}"
# Pre-trained models outlive an experiment: their jobs' benchmarks lie outside its folder,
# so that another experiment over the same models finds them rather than pre-training again.
# An experiment name starts with a letter or digit, so none is "_pretrained".
PRETRAIN_BENCHMARKS = "benchmarks/runs/_pretrained"
ENV = "../../envs/augbench.yaml"
# clip-retrieval pins numpy<2 and img2dataset is optional: their rules have their own envs.
CLIP_SERVICE_ENV = "../../envs/clip-retrieval.yaml"
DOWNLOAD_ENV = "../../envs/download.yaml"
# Rules that may run in another Python (service.python, download.python) import augbench from here.
SOURCE = Path(workflow.basedir) / "src"
POOL_IMAGE_EMBEDDINGS = f"{RESULTS}/embed/pool_images.npy"
POOL_CLIP_RETRIEVAL_UNREADABLE = (
    f"{RESULTS}/embed/pool_images/clip_retrieval.unreadable.csv"
)
# Pool rows that no retrieval method may return (copies of evaluation or training images, safety tags).
POOL_EXCLUDED = f"{RESULTS}/pool/excluded.csv"
MINIWORLD = config["miniworld"]
METHODS = config["methods"]
SEEDS = [int(seed) for seed in config["seeds"]]
if len(set(SEEDS)) != len(SEEDS):
    raise ValueError(f"config seeds: {config['seeds']} repeats a seed")


# Targets learned per class run in shards of classes; UNet targets are one model.
PER_CLASS_TARGETS = ("token", "conditioning")


def methods_of(kind):
    return [name for name, params in METHODS.items() if params["kind"] == kind]


def alternation(names):
    """A wildcard regex matching exactly these names (and nothing if there are none)."""
    return "|".join(re.escape(name) for name in names) or "(?!)"


wildcard_constraints:
    method=alternation(METHODS),
    seed=r"\d+",


def check_config():
    """Checks that a JSON schema cannot express; each names the key at fault."""
    subset = config["subset"]
    sizes = [subset[key] is not None for key in ("per_class", "fraction", "file_list")]
    if sum(sizes) != 1:
        raise ValueError(
            "config subset: set exactly one of subset.per_class and subset.fraction "
            "(or neither, with subset.file_list)"
        )
    check_dataset_split(config["dataset"])
    for name in methods_of("generate"):
        check_generation_method(name, METHODS[name])
    for name in methods_of("retrieve") + methods_of("generate"):
        check_clip_filter(name, METHODS[name])
    if MINIWORLD["pretrain"]:
        check_pretraining()
    for name in methods_of("retrieve"):
        check_retrieval_method(name, METHODS[name])
    paths = {
        "dataset.classes": config["dataset"]["classes"],
        "dataset.train": config["dataset"]["train"],
        "dataset.val": config["dataset"]["val"],
        **pool_paths(),
    }
    paths = {key: path for key, path in paths.items() if path is not None}
    if subset["file_list"] is not None and not Path(subset["file_list"]).is_file():
        raise ValueError(
            f"config subset.file_list: {subset['file_list']} does not exist"
        )
    if not MINIWORLD["enabled"]:
        for key, path in paths.items():
            if not Path(path).exists() and not glob.glob(path):
                raise ValueError(f"config {key}: {path} does not exist")
    else:
        root = Path(MINIWORLD["root"])
        for key, path in paths.items():
            if not Path(path).is_relative_to(root):
                raise ValueError(
                    f"config {key}: {path} is not under miniworld.root {root}; "
                    "with miniworld.enabled the data comes from the mini-world rules"
                )
    check_safety_column(config["pool"]["manifest"], config["pool"]["safety_column"])


def check_safety_column(manifest, column):
    """A safety column the config names must be in a CSV pool manifest (read from its header,
    where it exists yet); other layouts are checked by the job that reads them."""
    pool = Path(manifest)
    if (
        column is None
        or pool.suffix != ".csv"
        or not pool.is_file()
        or pool.stat().st_size == 0
    ):
        return
    with open(pool, newline="") as handle:
        header = next(csv.reader(handle), [])
    if column not in header:
        raise ValueError(
            f"config pool.safety_column: {column!r} is not a column of {manifest} (its columns: {header}); "
            "null honours LAION's NSFW column where a pool has one"
        )


def check_dataset_split(dataset):
    """One tree split into training and validation images has no separate val."""
    if dataset["split"] is None:
        if dataset["val"] is None:
            raise ValueError(
                "config dataset.val: give the validation images, or dataset.split "
                "to split dataset.train into training and validation images"
            )
        return
    if dataset["val"] is not None:
        raise ValueError(
            "config dataset.val: with dataset.split the validation images are the rest "
            "of dataset.train; set dataset.val: null"
        )
    if MINIWORLD["enabled"]:
        raise ValueError(
            "config dataset.split: the mini-world makes its own training and validation "
            "sets; set dataset.split: null"
        )


def check_pretraining():
    """The pre-training rules write CLIP as an open_clip folder and train at one resolution."""
    if not config["clip"]["model"].startswith("local-dir:"):
        raise ValueError(
            f"config clip.model: with miniworld.pretrain the workflow trains CLIP into a folder; "
            f"name it local-dir:<folder>, not {config['clip']['model']!r}"
        )
    if config["clip"]["pretrained"] is not None:
        raise ValueError(
            "config clip.pretrained: with miniworld.pretrain the trained folder holds the weights; set it to null"
        )
    size = MINIWORLD["image_size"]
    channels = (
        MINIWORLD["diffusion"]["vae_channels"] + MINIWORLD["diffusion"]["unet_channels"]
    )
    # Each VAE and UNet block but the last halves the side; CLIP's patches are 4 pixels.
    halvings = len(channels) - 2
    if size % max(4, 2**halvings):
        raise ValueError(
            f"config miniworld.image_size: pre-training needs a multiple of {max(4, 2**halvings)} "
            f"(CLIP's 4-pixel patches; the VAE's and the UNet's blocks halve the side {halvings} "
            f"times), not {size}"
        )
    groups = min(16, *channels)
    uneven = [width for width in channels if width % groups]
    if uneven:
        raise ValueError(
            f"config miniworld.diffusion: channel widths {uneven} are not multiples of {groups}, "
            "the group size of the models' normalisation (the smallest width, at most 16)"
        )


def check_generation_method(name, params):
    """Combinations of a generation method's params that cannot work together."""
    key = f"config methods.{name}"
    learned = params.get("personalise") or {}
    target = learned.get("target")
    if params["prompt"] == "empty" and params["zero_shot_keep"] is None:
        raise ValueError(
            f"{key}.zero_shot_keep: an empty prompt gives images no class; "
            "set a share in (0, 1] to label them by CLIP zero-shot classification"
        )
    if params["prompt"] == "empty" and (params["strength"] is not None or learned):
        raise ValueError(
            f"{key}.prompt: 'empty' cannot go with strength or personalise, "
            "which start from a class; use 'classname'"
        )
    if target == "conditioning" and params["prompt"] != "classname":
        raise ValueError(
            f"{key}.prompt: a learned conditioning replaces the prompt; only 'classname' is allowed"
        )
    if learned.get("clusters", 1) > 1 and target != "conditioning":
        raise ValueError(
            f"{key}.personalise.clusters: clusters apply to target 'conditioning', not {target!r}"
        )
    if learned.get("shards", 1) > 1 and target not in PER_CLASS_TARGETS:
        raise ValueError(
            f"{key}.personalise.shards: target {target!r} learns one UNet for all classes "
            f"and runs as one job; shards apply to {list(PER_CLASS_TARGETS)}"
        )


def check_clip_filter(name, params):
    """The CLIP-score filter's thresholds file must exist; zero-shot labelling keeps its own share."""
    key = f"config methods.{name}"
    path = params["min_clip_score_file"]
    if path is not None and not Path(path).is_file():
        raise ValueError(f"{key}.min_clip_score_file: {path} does not exist")
    if filters_by_clip_score(name) and params.get("zero_shot_keep") is not None:
        raise ValueError(
            f"{key}.min_clip_score: cannot go with zero_shot_keep, which already keeps "
            "the share of images CLIP scores best; set one of them"
        )


def filters_by_clip_score(method):
    params = METHODS[method]
    return (
        params.get("min_clip_score") is not None
        or params.get("min_clip_score_file") is not None
    )


def clip_filter_options(method):
    """Options of the CLIP-score filter; none where a method does not filter, so its jobs stay as they were."""
    if not filters_by_clip_score(method):
        return {}
    params = METHODS[method]
    options = {key: params[key] for key in ("min_clip_score", "min_clip_score_file")}
    if params["kind"] == "retrieve":
        return {**options, "class_prompts": rules.embed_prompts.output[0]}
    return {
        **options,
        "regenerate_rounds": params["regenerate_rounds"],
        "class_embeddings": rules.embed_prompts.output[0],
        "clip_model": config["clip"]["model"],
        "clip_pretrained": config["clip"]["pretrained"],
    }


def clip_filter_inputs(wildcards):
    """The class prompts' embeddings and the thresholds file (so that editing it reruns the method)."""
    if not filters_by_clip_score(wildcards.method):
        return {}
    params = METHODS[wildcards.method]
    inputs = {"class_prompts_scored": rules.embed_prompts.output[0]}
    if params["min_clip_score_file"] is not None:
        inputs["min_clip_score_file"] = params["min_clip_score_file"]
    if params["kind"] == "generate":
        inputs["clip_scorer"] = clip_inputs()
    return inputs


def quality_tables():
    """The per-class CLIP-score filter table of each retrieval and generation method."""
    return [
        f"{RESULTS}/added/{method}/quality.csv"
        for method in local_retrieval_methods() + methods_of("generate")
    ]


def check_retrieval_method(name, params):
    """A kNN service's results are URLs: it needs its endpoint, and a download."""
    key = f"config methods.{name}"
    if params["backend"] != "clip_service":
        return
    if not params["service"]["url"]:
        raise ValueError(
            f"{key}.service.url: backend clip_service needs the service's kNN endpoint "
            "(http://host:port/knn-service)"
        )
    if params["download"]["enabled"] is False:
        raise ValueError(
            f"{key}.download.enabled: a kNN service returns URLs, which are downloaded; "
            "leave it null or true"
        )
    if filters_by_clip_score(name):
        raise ValueError(
            f"{key}.min_clip_score: the CLIP-score filter scores the pool's embeddings here; "
            "a kNN service's results have none (use the service's own filters)"
        )


def searches_pool(method):
    """Whether a retrieval method searches the pool's embeddings here (not a kNN service's index)."""
    return METHODS[method]["backend"] == "local"


def local_retrieval_methods():
    """The retrieval methods that search the pool's embeddings here."""
    return [name for name in methods_of("retrieve") if searches_pool(name)]


def downloads(method):
    """Whether a retrieval method's results are URLs that a download step fetches into files."""
    params = METHODS[method]
    enabled = params["download"]["enabled"]
    return params["backend"] == "clip_service" if enabled is None else enabled


def retrieval_methods(backend, download):
    """The retrieval methods of a backend whose results are downloaded (or not)."""
    return [
        name
        for name in methods_of("retrieve")
        if METHODS[name]["backend"] == backend and downloads(name) == download
    ]


def download_methods():
    """The retrieval methods whose results are URLs, downloaded and then screened."""
    return [name for name in methods_of("retrieve") if downloads(name)]


def download_failure_lists():
    """Method -> the list of its failed downloads."""
    return {
        name: f"{RESULTS}/added/{name}/download_failures.csv"
        for name in download_methods()
    }


def download_exclusion_lists():
    """Method -> the list of its downloaded images that screening left out."""
    return {name: f"{RESULTS}/added/{name}/excluded.csv" for name in download_methods()}


def service_query_embeddings(method):
    """The embeddings sent as queries when the workflow embeds them (service.embed: local)."""
    params = METHODS[method]
    if params["service"]["embed"] != "local":
        return []
    if params["query"] == "image":
        return rules.embed_subset.output
    return rules.embed_prompts.output


def service_options(method):
    params = METHODS[method]
    service = params["service"]
    queries = service_query_embeddings(method)
    return cli_options(
        {
            "url": service["url"],
            "indice_name": service["indice_name"],
            "query": params["query"],
            "template": config["prompt_template"],
            "embeddings": queries[0] if queries else None,
            # Captions are the service's text index.
            "modality": "text" if params["index"] == "caption" else "image",
            "per_class": added_per_class(method),
            "factor": params["download"]["factor"],
            "overfetch": params["overfetch"],
            "max_images": service["max_images"],
            "aesthetic_score": service["aesthetic_score"],
            "aesthetic_weight": service["aesthetic_weight"],
            "use_safety_model": service["use_safety_model"],
            "use_violence_detector": service["use_violence_detector"],
            "deduplicate": service["deduplicate"],
        }
    )


def is_manifest(path):
    return path.endswith((".csv", ".parquet"))


# The pool: a CSV or Parquet manifest; or img2dataset's webdataset shards (pool.manifest a
# folder or glob of .tar files), which a job lists into a manifest; or, with pool.embeddings,
# a clip-retrieval folder whose embeddings and metadata are used as they are (its
# image_path then names files, or the keys of the shards pool.manifest names).
POOL_SHARDS = not is_manifest(config["pool"]["manifest"])
POOL_CLIP_RETRIEVAL = config["pool"]["embeddings"]
POOL_WEBDATASET_MANIFEST = f"{RESULTS}/data/pool_webdataset.csv"
# The pool's images and captions as given (shards listed); pre-training reads these, as a
# clip-retrieval folder's embeddings come from the CLIP that pre-training would make.
POOL_IMAGES = POOL_WEBDATASET_MANIFEST if POOL_SHARDS else config["pool"]["manifest"]
POOL_MANIFEST = (
    f"{RESULTS}/data/pool_clip_retrieval.csv" if POOL_CLIP_RETRIEVAL else POOL_IMAGES
)


def pool_paths():
    """The pool's data paths the config names and the workflow reads."""
    paths = {}
    if POOL_SHARDS or not POOL_CLIP_RETRIEVAL:
        paths["pool.manifest"] = config["pool"]["manifest"]
    if POOL_CLIP_RETRIEVAL:
        paths["pool.embeddings"] = POOL_CLIP_RETRIEVAL
    return paths


def pool_shard_inputs(wildcards=None):
    """A folder of shards is one input; a glob pattern is the tars it matches."""
    shards = config["pool"]["manifest"]
    return shards if Path(shards).is_dir() else sorted(glob.glob(shards))


def pool_captions_searched():
    return any(
        METHODS[name]["index"] == "caption" for name in local_retrieval_methods()
    )


# A dataset split is a manifest, or a class-per-folder tree that a job lists into one
# (listing a million files while the DAG is built would slow every dry run).
FOLDER_SPLITS = [
    split
    for split in ("train", "val")
    if config["dataset"][split] is not None
    and not is_manifest(config["dataset"][split])
]
# With dataset.split, dataset.train is all of a dataset (Caltech-256's one tree) and a
# job splits it per class into the training and validation images.
DATASET_SPLIT = config["dataset"]["split"]


def dataset_manifest(split):
    if DATASET_SPLIT is not None and split in ("train", "val"):
        return f"{RESULTS}/data/split/{split}.csv"
    return listed_manifest(split)


def listed_manifest(split):
    """The manifest of dataset.<split> as given: itself, or the listing of its tree."""
    if split in FOLDER_SPLITS:
        return f"{RESULTS}/data/{split}.csv"
    return config["dataset"][split]


TRAIN_MANIFEST = dataset_manifest("train")
# Every method is evaluated on the validation images that can be read.
VAL_MANIFEST = f"{RESULTS}/data/val_readable.csv"


def local_model(reference):
    """The folder or file a model reference names, if it is local; None for a hub id.

    A local model is an input of the jobs that use it, so the mini-world's
    pre-training rules run first; a hub id is fetched by the job itself.
    """
    if reference is None:
        return None
    path = reference.removeprefix("local-dir:")
    if (
        reference.startswith("local-dir:")
        or os.path.isabs(path)
        or path.startswith(".")
    ):
        return path
    if MINIWORLD["enabled"] and Path(path).is_relative_to(MINIWORLD["root"]):
        return path
    # The pre-training rules write these, whatever data they train on.
    if MINIWORLD["pretrain"] and reference in (
        config["clip"]["model"],
        config["diffusion"]["model"],
    ):
        return path
    return path if Path(path).exists() else None


check_config()


def check_models():
    """A local model the config names must exist unless the workflow trains it
    (hub ids are fetched by the jobs)."""
    if MINIWORLD["pretrain"]:
        return
    hint = (
        "; set miniworld.pretrain: true to train it with the mini-world's rules"
        if MINIWORLD["enabled"]
        else ""
    )
    for key in ("clip.model", "clip.pretrained", "diffusion.model"):
        section, name = key.split(".")
        path = local_model(config[section][name])
        if path and not Path(path).exists():
            raise ValueError(f"config {key}: {path} does not exist{hint}")


def check_classifier_weights():
    weights = config["classifier"]["init_weights"]
    if weights and not Path(weights).is_file():
        raise ValueError(f"config classifier.init_weights: {weights} is not a file")


check_models()
check_classifier_weights()


def clip_inputs(wildcards=None):
    references = (config["clip"]["model"], config["clip"]["pretrained"])
    return [path for path in map(local_model, references) if path]


def diffusion_inputs(wildcards=None):
    path = local_model(config["diffusion"]["model"])
    return [path] if path else []


def added_per_class(method):
    """Images a retrieval or generation method adds per class: its own per_class (a sweep
    over it is a few registry entries), else augment.per_class (null: 1:1 with the real ones).
    """
    own = METHODS[method].get("per_class")
    return config["augment"]["per_class"] if own is None else own


def adds_images(method):
    """Whether a method trains on more than the subset (every method but the baseline)."""
    params = METHODS[method]
    return params["kind"] != "real" or params["real_multiplier"] > 1


def added_images(wildcards):
    """The added-image manifest of a method, if it adds any."""
    if not adds_images(wildcards.method):
        return []
    return [f"{RESULTS}/added/{wildcards.method}/manifest.csv"]


def personalisation_of(method):
    return METHODS[method].get("personalise") or None


def personalised_methods():
    return [name for name in methods_of("generate") if personalisation_of(name)]


def personalisation_files(method):
    """The personalisation artefacts a generation method samples with, one per shard."""
    learned = personalisation_of(method)
    if not learned:
        return []
    shards = learned["shards"] if learned["target"] in PER_CLASS_TARGETS else 1
    return [
        f"{RESULTS}/personalised/{method}/shard{shard}.safetensors"
        for shard in range(shards)
    ]


def generation_shards(method):
    """The manifests of a generation method's jobs, one per shard of its images."""
    return [
        f"{RESULTS}/added/{method}/shards/shard{shard}.csv"
        for shard in range(METHODS[method]["shards"])
    ]


def zero_shot_options(method):
    """Zero-shot labelling embeds the generated images with CLIP and compares them with the class prompts."""
    if METHODS[method]["zero_shot_keep"] is None:
        return {}
    return {
        "class_embeddings": rules.embed_prompts.output[0],
        "clip_model": config["clip"]["model"],
        "clip_pretrained": config["clip"]["pretrained"],
    }


# Personalisation settings that change how it runs (memory), not what it learns. At
# their defaults they stay off the command line, so jobs run before they existed stand.
PERSONALISE_RUN_DEFAULTS = {
    "micro_batch": None,
    "precision": "float32",
    "gradient_checkpointing": False,
}


def personalisation_options(method):
    """A method's personalise entry as its job's options (the rule counts the shards)."""
    return {
        key: value
        for key, value in personalisation_of(method).items()
        if key != "shards"
        and not (
            key in PERSONALISE_RUN_DEFAULTS and value == PERSONALISE_RUN_DEFAULTS[key]
        )
    }


def personalisation_checks(method):
    """What generation checks the artefacts against before sampling."""
    learned = personalisation_of(method)
    if not learned:
        return {}
    uses_tokens = learned["target"] in ("token", "token_unet")
    return {
        "personalised": learned["target"],
        "vectors": learned["vectors"] if uses_tokens else None,
    }


def zero_shot_inputs(wildcards):
    """Zero-shot labelling embeds the generated images and compares them with the class prompts."""
    options = zero_shot_options(wildcards.method)
    if not options:
        return {}
    return {"class_prompts": options["class_embeddings"], "clip": clip_inputs()}


# Options of augbench.generate that a method's entry in the registry sets.
GENERATE_OPTIONS = (
    "prompt",
    "scheduler",
    "steps",
    "guidance_scale",
    "seed",
    "strength",
    "zero_shot_keep",
)


# GPUs a job of each GPU rule asks for; the rules take them from here, and the cost
# table counts GPU hours with them.
GPUS = {
    "pretrain_clip": 1,
    "pretrain_diffusion": 1,
    "embed_pool": 1,
    "embed_pool_captions": 1,
    "embed_subset": 1,
    "embed_val": 1,
    "screen_downloads": 1,
    "personalise": 1,
    "generate": 1,
    "train": config["classifier"]["processes"],
}


def benchmark_of(rule_name, job, root=BENCHMARKS):
    """Where a job's Snakemake benchmark goes: <rule>/[<method>/]<job>.tsv, the layout augbench.cost reads."""
    return f"{root}/{rule_name}/{job}.tsv"


def pretrain_benchmark(rule_name, model):
    """A pre-training job's benchmark, named after the model it makes (one per model folder)."""
    name = re.sub(r"[^\w.-]+", "_", local_model(config[model]["model"]).strip("/"))
    return benchmark_of(rule_name, name, PRETRAIN_BENCHMARKS)


def cost_inputs():
    """The benchmarks of the jobs the cost table reports: each method's own, and the shared
    ones (embedding the pool, subset and validation images, screening the pool; pre-training
    is pretrain_benchmarks()); tests/test_presets.py checks that none is missing."""
    files = []
    for method, params in METHODS.items():
        for stage in ("train", "evaluate"):
            files += [benchmark_of(stage, f"{method}/seed{seed}") for seed in SEEDS]
        if params["kind"] == "retrieve":
            files.append(benchmark_of("retrieve", f"{method}/retrieve"))
            if downloads(method):
                files.append(benchmark_of("download", f"{method}/download"))
                files.append(
                    benchmark_of("screen_downloads", f"{method}/screen_downloads")
                )
        if params["kind"] == "generate":
            files += [
                benchmark_of("generate", f"{method}/shard{shard}")
                for shard in range(params["shards"])
            ]
            files += [
                benchmark_of("personalise", f"{method}/shard{shard}")
                for shard in range(len(personalisation_files(method)))
            ]
    # A clip-retrieval pool comes embedded; a kNN service searches its own index.
    shards = [] if POOL_CLIP_RETRIEVAL else range(config["pool"]["embed_shards"])
    if local_retrieval_methods():
        files += [benchmark_of("embed_pool", f"shard{shard}") for shard in shards]
        files.append(benchmark_of("screen_pool", "screen_pool"))
    if screens_copies() and config["contamination"]["eval_threshold"] is not None:
        files.append(benchmark_of("embed_val", "embed_val"))
    if embeds_subset():
        files.append(benchmark_of("embed_subset", "embed_subset"))
    if any(METHODS[name]["index"] == "caption" for name in local_retrieval_methods()):
        files += [
            benchmark_of("embed_pool_captions", f"shard{shard}") for shard in shards
        ]
    return files


def pretrain_benchmarks():
    """The pre-training jobs' benchmarks, which the cost table reads where they exist: as
    inputs, a missing one (models made before, or elsewhere) would pre-train again."""
    if not MINIWORLD["pretrain"]:
        return []
    return [
        pretrain_benchmark("pretrain_clip", "clip"),
        pretrain_benchmark("pretrain_diffusion", "diffusion"),
    ]


def embeds_subset():
    """Whether a job reads the subset's CLIP image embeddings: image-query retrieval (here, or
    embedded here for a kNN service), clustered personalisation, or screening for copies of
    training images.
    """
    return (
        any(
            METHODS[name]["query"] == "image"
            and (searches_pool(name) or service_query_embeddings(name))
            for name in methods_of("retrieve")
        )
        or any(
            personalisation_of(name)["clusters"] > 1 for name in personalised_methods()
        )
        or screens_copies()
        and config["contamination"]["train_threshold"] is not None
    )


def screens_copies():
    """Whether images are screened for copies of evaluation and training images: a pool
    searched here, or the downloads of URL results."""
    return bool(local_retrieval_methods() or download_methods())


def grows(amount):
    """A resource that grows with each attempt, as a job killed for memory or time (--retries) needs more."""
    return lambda wildcards, attempt: amount * attempt


def cli_options(options):
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


def pool_screen_inputs(wildcards=None):
    """The images pool images must not copy (manifest and CLIP embeddings), for each check a threshold turns on."""
    thresholds = config["contamination"]
    inputs = {}
    if thresholds["eval_threshold"] is not None:
        inputs["eval_manifest"] = VAL_MANIFEST
        inputs["eval_embeddings"] = rules.embed_val.output[0]
    if thresholds["train_threshold"] is not None:
        inputs["train_manifest"] = rules.subset.output.subset
        inputs["train_embeddings"] = rules.embed_subset.output[0]
    return inputs


def unreadable_lists():
    """Stage -> the lists of images that stage could not read and skipped."""
    lists = {
        "subset draw": [rules.subset.output.unreadable],
        "validation": [rules.screen_val.output.unreadable],
    }
    for method in methods_of("real"):
        if adds_images(method):
            lists[f"real extras of {method}"] = [
                f"{RESULTS}/added/{method}/unreadable.csv"
            ]
    if local_retrieval_methods() and POOL_CLIP_RETRIEVAL:
        lists["pool"] = [POOL_CLIP_RETRIEVAL_UNREADABLE]
    elif local_retrieval_methods():
        lists["pool"] = [
            f"{RESULTS}/embed/pool_images/shard{shard}.unreadable.csv"
            for shard in range(config["pool"]["embed_shards"])
        ]
    return lists


def provenance_settings():
    """What of the config produced the results: the models and every method's resolved entry."""
    return {
        "experiment": config["experiment"],
        "dataset": config["dataset"],
        "clip": {key: config["clip"][key] for key in ("model", "pretrained")},
        "diffusion": {
            key: config["diffusion"][key] for key in ("model", "revision", "dtype")
        },
        "classifier": config["classifier"],
        "subset": config["subset"],
        "augment": config["augment"],
        "contamination": config["contamination"],
        "pool_safety": {
            key: config["pool"][key] for key in ("safety_column", "drop_safety_values")
        },
        "prompt_template": config["prompt_template"],
        "seeds": SEEDS,
        "methods": METHODS,
    }


def print_summary():
    summary = Path(f"{RESULTS}/summary.md")
    if summary.exists():
        print(f"\nResults of experiment {config['experiment']!r} ({summary}):\n")
        print(summary.read_text())
