"""GPU hours of a preset on one GPU, from the throughputs that benchmarks/gpu.py measured.

    python benchmarks/cost_model.py --gpu benchmarks/gpu-NVIDIA_H100_80GB_HBM3.json \
        --config configs/imagenet10.yaml > cost.md

Each method's own jobs come from the preset's dry run (on stub data, as bench_dag); its
GPU hours from the images each of its stages processes over that stage's measured
images/s:
- training: seeds x epochs x (real + added images) / T_train (ResNet-50, AMP);
- evaluation: seeds x validation images / T_train (forward only is faster: an upper bound);
- generation: added images x (steps / measured steps) x (strength for image variations)
  x (model passes a step / measured passes) / keep share (zero-shot) / T_gen of the
  method's backend (diffusion.backend, its own or the experiment's): sd at SD-1.5 size,
  512 px, batch 16, 25 steps, guidance on; sdxl, sd3 and flux at their real sizes and
  1024 px, batch 4, with gpu.py's steps. Two passes a step under classifier-free guidance,
  one without (FLUX: one, two at a true_cfg_scale above 1). A method whose diffusion
  image_size differs from the measured side (SD 2.1 at 768 px) is scaled by the ratio of
  their latent positions, (side / measured side)^2: attention grows faster than that, so
  larger sides are underestimated a little and smaller ones overestimated. A native size
  (image_size null) is taken to be the measured one;
- personalisation: steps x batch images of UNet forward and backward, per class for the
  token and conditioning targets, / T_personalise (or T_lora for UNet targets), both measured
  on SD 1.5 at 512 px: scaled by the method's image_size as generation is, not by its backend
  (SDXL's, SD3's and FLUX's larger models are underestimated);
- shared: pool, subset and validation embedding / T_embed (ViT-L/14).
Retrieval (pool screening and shard search) is costed apart: see `pool` below.

    python benchmarks/cost_model.py pool --config configs/imagenet10-relaion.yaml --rows 2.1e9

plans the pool stages of a pool in shards on paper (``pool_plan``): jobs, disk, memory per
job, CPU and GPU hours of embedding, screening, indexing and searching, from the CPU rates
that ``make bench`` measured (benchmarks/latest.json), gpu.sh's figures where given, and
stated assumptions (each printed with its source).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

import yaml

from augbench.study import diffusion_settings

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
IMAGENET_TRAIN, IMAGENET_VAL = 1_281_167, 50_000
MEASURED_STEPS = 25  # gpu.py's generation runs 25 DPM-Solver++ steps
SHARED = "(shared)"


def resolved_config(path: str) -> dict:
    """The preset with its method registry merged in and the schema's defaults filled in, as the workflow sees it."""
    from augbench.study import resolve

    return resolve(yaml.safe_load(Path(path).read_text()))


def jobs_per_method(output: str) -> dict[str, Counter]:
    """Method (or SHARED) -> rule -> jobs, from a dry run's printed jobs."""
    jobs: dict[str, Counter] = defaultdict(Counter)
    for block in re.split(r"^(?=(?:local)?rule \w+:)", output, flags=re.M):
        rule = re.match(r"(?:local)?rule (\w+):", block)
        if not rule or rule.group(1) == "all":
            continue
        method = re.search(r"^\s+wildcards:.*\bmethod=([\w.-]+)", block, re.M)
        jobs[method.group(1) if method else SHARED][rule.group(1)] += 1
    return dict(jobs)


def dry_run_jobs(config_path: str) -> dict[str, Counter]:
    import subprocess

    from augbench.stub import make_stub

    with tempfile.TemporaryDirectory() as tmp:
        make_stub(config_path, tmp)
        (Path(tmp) / "resources").symlink_to(REPO / "resources")
        command = [sys.executable, "-m", "snakemake", "--directory", tmp, "--snakefile", str(REPO / "Snakefile")]
        command += ["--configfile", str(Path(config_path).resolve()), "-n", "all"]
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return jobs_per_method(output)


def throughputs(gpu: dict) -> dict[str, float]:
    """The images/s the model uses, by name, from gpu.py's JSON."""

    def pick(pattern: str, required: bool = True) -> tuple[re.Match, float] | None:
        found = [(match, value) for key, value in gpu.items() if (match := re.fullmatch(pattern, key))]
        if len(found) != 1 and (required or found):
            raise ValueError(f"the GPU figures have {len(found)} keys matching {pattern!r}, not 1")
        return (found[0][0], float(found[0][1])) if found else None

    speed = {
        "train": pick(r"train_resnet50_224px_amp_images_per_s")[1],
        "generate": pick(r"gen_sd15_512px_batch16_images_per_s")[1],
        "generate_side": 512.0,
        "personalise": pick(r"personalise_sd15_512px_conditioning_images_per_s")[1],
        "lora": pick(r"personalise_sd15_512px_lora_images_per_s")[1],
        "embed": pick(r"embed_ViT_L_14_images_per_s")[1],
    }
    # Figures of the later families (gpu.py since they were added; older JSONs lack them).
    for family in ("sdxl", "sd3", "flux"):
        found = pick(rf"gen_{family}_(\d+)px_batch\d+_images_per_s", required=False)
        if found:
            match, speed[f"generate_{family}"] = found
            speed[f"generate_{family}_side"] = float(match.group(1))
            speed[f"generate_{family}_steps"] = float(gpu[f"gen_{family}_steps"])
            speed[f"generate_{family}_passes"] = float(gpu[f"gen_{family}_passes"])
    return speed


def generation_rate(speed: dict[str, float], backend: str) -> tuple[float, float, float, float]:
    """A backend's measured images/s, with the steps, model passes a step and image side it was measured at."""
    if backend == "sd":
        return speed["generate"], MEASURED_STEPS, 2.0, speed["generate_side"]
    if f"generate_{backend}" not in speed:
        raise ValueError(
            f"the GPU figures have no generation rate of backend {backend!r} (gen_{backend}_*): "
            "rerun benchmarks/gpu.sh with this version of gpu.py"
        )
    measured = (speed[f"generate_{backend}{part}"] for part in ("", "_steps", "_passes", "_side"))
    return tuple(measured)


def size_factor(config: dict, method: dict, measured_side: float) -> float:
    """How much more an image of the method's diffusion image_size costs than one of the measured
    side: the ratio of their latent positions (1 at the pipeline's native size, taken as measured)."""
    side = diffusion_settings(config, method).get("image_size")
    return 1.0 if side is None else (side / measured_side) ** 2


def method_backend(config: dict, method: dict) -> str:
    """The family a generation method's model is: its own diffusion.backend, else the experiment's,
    else read from the pipeline's model_index.json where it can be read offline."""
    from augbench.families import backend_name

    diffusion = diffusion_settings(config, method)
    return backend_name(diffusion["model"], diffusion["revision"], diffusion["backend"])


def denoiser_factor(speed: dict[str, float], backend: str) -> float:
    """How much more a model pass of the backend's denoiser costs than SD 1.5's UNet at the same
    latent positions, from the two generation rates: each rate's seconds an image over its steps,
    model passes a step and latent positions (1 for ``sd``)."""

    def seconds_a_pass_position(family: str) -> float:
        rate, steps, passes, side = generation_rate(speed, family)
        return 1.0 / (rate * steps * passes * side**2)

    return seconds_a_pass_position(backend) / seconds_a_pass_position("sd")


def personalisation_factor(config: dict, method: dict, speed: dict[str, float], backend: str) -> float:
    """What a personalisation step of the method costs against the measured one (SD 1.5 at 512 px):
    the backend's denoiser against SD 1.5's (``denoiser_factor``) times the ratio of latent positions
    at the method's image_size, or at the backend's measured generation side where it is null (the
    pipelines' native size: gpu.py generates at it). A training step is a forward and a backward pass
    of the same denoiser, so it scales as sampling does; the text encoders a token target backpropagates
    through (SD3's and FLUX's T5), and the method's precision and gradient checkpointing (the
    measured step is float32, without), are not counted."""
    side = diffusion_settings(config, method).get("image_size")
    if side is None:
        side = generation_rate(speed, backend)[3]
    return denoiser_factor(speed, backend) * (side / PERSONALISE_MEASURED_SIDE) ** 2


def passes_per_step(backend: str, method: dict) -> int:
    """Model passes a sampling step: two under classifier-free guidance (FLUX: true CFG), else one."""
    from augbench.families import GUIDANCE_AS_MODEL_INPUT

    if backend in GUIDANCE_AS_MODEL_INPUT:
        return 2 if (method.get("true_cfg_scale") or 1.0) > 1.0 else 1
    return 2 if method["guidance_scale"] > 1.0 else 1


def method_hours(config: dict, speed: dict[str, float], train_images: int, val_images: int) -> dict[str, dict]:
    """Method -> stage -> GPU hours on one GPU of the measured kind."""
    real = real_images(config, train_images)
    seeds, epochs = len(config["seeds"]), config["classifier"]["epochs"]
    hours = {}
    for name, method in config["methods"].items():
        added = (
            real * (method.get("real_multiplier", 1) - 1)
            if method["kind"] == "real"
            else added_images(config, method, real)
        )
        stages = {
            "train": seeds * epochs * (real + added) / speed["train"] / 3600,
            "evaluate": seeds * val_images / speed["train"] / 3600,
        }
        if method["kind"] == "generate":
            backend = method_backend(config, method)
            rate, measured_steps, measured_passes, measured_side = generation_rate(speed, backend)
            per_image = method["steps"] / measured_steps * (method["strength"] or 1.0)
            per_image *= passes_per_step(backend, method) / measured_passes
            per_image *= size_factor(config, method, measured_side)
            generated = added / (method["zero_shot_keep"] or 1.0)
            stages["generate"] = generated * per_image / rate / 3600
            if method.get("personalise"):
                steps = personalise_hours(config, method["personalise"], speed)
                stages["personalise"] = steps * personalisation_factor(config, method, speed, backend)
        hours[name] = stages
    return hours


def real_images(config: dict, train_images: int) -> int:
    """The subset's size: a fraction of the training set, or images per class."""
    if config["subset"]["fraction"]:
        return round(train_images * config["subset"]["fraction"])
    return config["subset"]["per_class"] * n_classes(config)


def n_classes(config: dict) -> int:
    return sum(1 for line in (REPO / config["dataset"]["classes"]).read_text().splitlines() if line.strip())


def added_images(config: dict, method: dict, real: int) -> int:
    per_class = method.get("per_class") or config["augment"]["per_class"]
    return per_class * n_classes(config) if per_class else real


def personalise_hours(config: dict, params: dict, speed: dict[str, float]) -> float:
    from augbench.methods import PER_CLASS_TARGETS

    images = params["steps"] * params["batch_size"]
    if params["target"] in PER_CLASS_TARGETS:
        return n_classes(config) * images / speed["personalise"] / 3600
    return images / speed["lora"] / 3600


def shared_hours(speed: dict[str, float], pool_images: int, real: int, val_images: int) -> dict[str, float]:
    return {
        "embed pool": pool_images / speed["embed"] / 3600,
        "embed subset and validation": (real + val_images) / speed["embed"] / 3600,
    }


def render(jobs: dict[str, Counter], hours: dict[str, dict], shared: dict[str, float], card: str) -> str:
    lines = [
        f"| method | its own jobs | GPU hours on one {card} (stage: hours) | total |",
        "| --- | --- | --- | ---: |",
    ]
    for name, stages in hours.items():
        counted = ", ".join(f"{n} {rule}" for rule, n in sorted(jobs.get(name, {}).items()))
        parts = ", ".join(f"{stage} {value:,.1f}" for stage, value in stages.items())
        lines.append(f"| `{name}` | {counted} | {parts} | {sum(stages.values()):,.1f} |")
    counted = ", ".join(f"{n} {rule}" for rule, n in sorted(jobs.get(SHARED, {}).items()))
    parts = ", ".join(f"{stage} {value:,.1f}" for stage, value in shared.items())
    lines.append(f"| shared | {counted} | {parts} | {sum(shared.values()):,.1f} |")
    return "\n".join(lines) + "\n"


# -- A pool in shards, on paper ---------------------------------------------------------
#
#     python benchmarks/cost_model.py pool --config configs/imagenet10-relaion.yaml --rows 2.1e9
#
# Jobs, disk, memory per job and CPU/GPU hours of the pool stages (embedding, screening,
# searching and merging) for a pool of --rows rows in the config's pool.shards shards,
# pool.shards_per_job to a job. Each per-unit rate is named with its source: a figure of
# benchmarks/latest.json (this machine's CPUs), of a --gpu file, or a stated assumption.

PERSONALISE_MEASURED_SIDE = 512  # gpu.py's personalise_sd15_512px_* figures
CLIP_WIDTH = {"ViT-B-32": 512, "ViT-B-16": 512, "ViT-L-14": 768, "ViT-H-14": 1024, "ViT-g-14": 1024}
CANDIDATE_BYTES = 8 + 4 + 16 + 1  # a shard search's row, score, fingerprint digest and filter flag
MEASURED_NLIST = 1024  # bench_search's index over 1M rows
BLOCK_ROWS = 1 << 16  # augbench.search.BLOCK: rows converted to float32 at a time
IVF_ID_BYTES = 8  # an inverted list stores each vector's 64-bit id beside its code
# Assumptions, until a measurement replaces them (each can be overridden on the command line):
ASSUMED = {
    # ViT-L/14 image tower at 224 px in fp16 on an A100-class GPU, with 8 CPUs decoding 256-px
    # JPEGs: about 80 GFLOPs an image at 40% of the card's fp16 peak is 1,500/s; 1,000 leaves room.
    "embed_images_per_gpu_s": 1000.0,
    # The text tower on 77 tokens is about a quarter of the image tower's work.
    "embed_captions_per_gpu_s": 4000.0,
    # The pool manifest (a webdataset listing: member path with byte range, caption, LAION's
    # url and scores) as CSV on disk, and about twice that as pandas strings in memory.
    "manifest_bytes_per_row": 300.0,
    "metadata_bytes_per_row": 150.0,  # a part's parquet (uid, url, text, ...), compressed
}


def measured_rates(latest: dict) -> dict[str, tuple[float, str]]:
    """Per-unit CPU rates from benchmarks/latest.json, each with its source."""
    cores = latest.get("machine", {}).get("cpus", 2)
    n, queries, k_probe = 1_000_000, 1000, 10  # bench_search: 1M x 768, 1,000 queries, 10 of 1,024 lists
    flat_pairs = queries * n / (latest["search_flat_seconds"] * cores)
    ivf_pairs = queries * k_probe * n / MEASURED_NLIST / (latest["search_seconds"] * cores)
    return {
        "index_core_s_per_1m_rows": (
            latest["search_build_seconds"] * cores,
            f"search_build_seconds {latest['search_build_seconds']:.1f} s x {cores} cores"
            " (IVF1024,SQfp16 over 1M x 768); scaled by rows x lists",
        ),
        "flat_pairs_per_core_s": (
            flat_pairs,
            f"search_flat_seconds {latest['search_flat_seconds']:.1f} s for 1,000 x 1M exact inner products"
            f" on {cores} cores",
        ),
        "ivf_pairs_per_core_s": (
            ivf_pairs,
            f"search_seconds {latest['search_seconds']:.2f} s for 1,000 queries x 10 of 1,024 lists of 1M rows"
            f" on {cores} cores",
        ),
        "listing_rows_per_s": (
            latest["listing_rows_per_s"],
            f"listing_rows_per_s: {latest['listing_rows']:,} samples in img2dataset's tars, 1 process a job,"
            " start-up apart",
        ),
        "listing_process_efficiency": (
            latest["listing_two_process_speedup"] / 2,
            f"listing_two_process_speedup {latest['listing_two_process_speedup']:.2f} / 2: one listing job of"
            " 2 processes against 2 jobs of one; taken for the rule's 8 too",
        ),
        "listing_table_rows_per_s": (
            latest["listing_table_rows_per_s"],
            f"listing_table_rows_per_s: the table of {latest['listing_table_rows']:,} keys in 2 listings,"
            " start-up apart",
        ),
        "job_start_s": (
            5.0,
            "sharded_* at small scale: 4.7-5.4 s per search job, mostly start-up (benchmarks/README.md)",
        ),
    }


def gpu_rates(gpu: dict | None) -> dict[str, tuple[float, str]]:
    """Embedding and exact-search rates on a GPU: from gpu.sh's JSON where given, else assumed."""
    rates = {
        "embed_images_per_gpu_s": (ASSUMED["embed_images_per_gpu_s"], "assumed (not measured; gpu.sh measures it)"),
        "embed_captions_per_gpu_s": (ASSUMED["embed_captions_per_gpu_s"], "assumed (a quarter of the image tower)"),
    }
    if gpu:
        card = gpu.get("device", "GPU")
        rates["embed_images_per_gpu_s"] = (gpu["embed_ViT_L_14_images_per_s"], f"gpu.py on {card}")
        rates["embed_captions_per_gpu_s"] = (
            4 * gpu["embed_ViT_L_14_images_per_s"],
            f"4 x gpu.py's image rate on {card}",
        )
        if gpu.get("search_faiss_gpus"):
            pairs = 1000 * gpu["search_vectors"] / gpu["search_flat_1k_queries_seconds"]
            rates["flat_pairs_per_gpu_s"] = (pairs, f"gpu.py's exact faiss search on {card}")
        shard_index = gpu.get("search_shard_index", "")
        if gpu.get("search_shard_gpus") and shard_index.startswith("IVF"):
            nlist = int(re.match(r"IVF(\d+)", shard_index).group(1))
            scanned = 1000 * gpu["search_shard_nprobe"] * gpu["search_vectors"] / nlist
            rates["ivf_pairs_per_gpu_s"] = (
                scanned / gpu["search_shard_1k_queries_seconds"],
                f"gpu.py's shard search ({shard_index}, k = {gpu['search_shard_depth']}) on {card}",
            )
    return rates


def index_bytes(rows: int, dim: int, factory: str) -> float:
    """Bytes of a faiss index of ``rows`` vectors: codes and ids in the inverted lists, centroids,
    and PQ's codebooks."""
    if factory == "Flat":
        return rows * dim * 4.0
    nlist = int(re.match(r"IVF(\d+)", factory).group(1))
    centroids = nlist * dim * 4.0
    if factory.endswith("SQfp16"):
        return rows * (2 * dim + IVF_ID_BYTES) + centroids
    m = int(re.search(r"PQ(\d+)", factory).group(1))
    return rows * (m + IVF_ID_BYTES) + centroids + 256 * dim * 4.0


def pool_plan(
    config: dict, rows: int, rates: dict[str, float], train_images: int = IMAGENET_TRAIN, val_images: int = IMAGENET_VAL
) -> tuple[list[dict], dict[str, float]]:
    """(one dict per pool stage: jobs, rows per job, memory per job, disk, CPU and GPU hours; the pool's disk).

    Formulas, with N pool rows in S shards, P shards a job (J = S / P jobs a stage), n = N / S rows a
    shard, d the CLIP width, Q a method's queries and D its round-0 depth per query:
    - embedding (own embeddings only): N / rate GPU-seconds; float32 files of N x d x 4 bytes;
    - screening: every pool row against the validation and subset images (exact, augbench.copies):
      N x references inner products on the CPU;
    - search, per local retrieval method (round 0; a later round searches only the shards the merge
      names): S index builds (train and add, scaled from the measured 1M-row build by n x lists) plus
      Q x nprobe x n / lists inner products per shard (Q x n where the shard's index is exact); Q is
      a query per class for text, per real image for image queries, and D 4 x the first search's
      depth for the mean class's quota (augbench.sharded_retrieval.query_plan takes the largest);
      GPU hours, where gpu.sh's figures are given, scale its shard search (IVF) by the lists
      scanned, else are exact search of the same queries on the GPU (an upper bound); the index's
      building stays on the CPU (augbench.search), in the CPU hours;
      candidate files of J x Q x D x 29 bytes; no index is stored: each job builds its own;
    - merge, per method: one job holding at most about 9 x D candidates per query;
    - listing (webdataset tars in more than one job): each job lists its block of tars at
      listing_rows_per_s a process (bench_listing, start-up apart), with the rule's 8 processes
      at the parallel efficiency measured for 2, holding its block's listing; then one table job
      hashes every key once (listing_table_rows_per_s), holding 9 bytes a row and a batch of a
      listing's keys (augbench.pool.table_memory); the listings are the pool's metadata on disk;
    - every job pays the start-up (job_start_s) on one core.
    Memory per job: an embedding job's whole block of float32 vectors, twice (in chunks, then
    joined); a search job's shard index, its training sample and a block of float32 rows (at most
    one shard's at a time) and the candidate lists; and the manifest each job reads: the whole
    pool manifest where shards are blocks of its rows, one part's metadata where a shard table
    lists parts, its block's listing where webdataset tars are listed a block per job.
    """
    from augbench.pool import LISTING_PROCESSES, table_memory
    from augbench.search import choose_factory, default_nprobe, training_sample_size
    from augbench.study import is_manifest

    pool = config["pool"]
    shards, per_job = pool["shards"], pool["shards_per_job"]
    jobs = shards // per_job
    shard_rows = -(-rows // shards)  # n
    dim = CLIP_WIDTH[config["clip"]["model"]]
    factory = choose_factory(shard_rows, dim, pool["index_memory_gb"] * 1e9)
    nlist = int(re.match(r"IVF(\d+)", factory).group(1)) if factory != "Flat" else 1
    precomputed = bool(pool.get("embeddings"))
    datacomp = pool.get("embeddings_layout") == "datacomp"
    parts = precomputed and (datacomp or shards > 1)  # a shard table: each job reads its parts' metadata
    # Webdataset tars in more than one job: each job's block of tars is listed apart, and read alone.
    tars = not precomputed and not is_manifest(str(pool["manifest"])) and jobs > 1
    # A job reads its parts' metadata one at a time, or its block's listing, or else the whole manifest.
    manifest_rows = shard_rows if parts else shard_rows * per_job if tars else rows
    manifest_read = manifest_rows * rates["manifest_bytes_per_row"] * 2
    real = real_images(config, train_images)
    contamination = config["contamination"]
    references = [
        size for key, size in (("eval_threshold", val_images), ("train_threshold", real)) if contamination[key]
    ]
    start = rates["job_start_s"] * jobs / 3600
    stages = []

    def stage(name, count, job_rows, memory, disk, cpu, gpu=0.0, note="", threads=1, manifest=manifest_read):
        wall = (gpu if name.startswith("embed") else cpu / threads) / count
        stages.append(
            {
                "stage": name,
                "jobs": count,
                "rows_per_job": job_rows,
                "memory_gb": memory / 1e9,
                "manifest_gb": manifest / 1e9,
                "disk_gb": disk / 1e9,
                "cpu_hours": cpu,
                "gpu_hours": gpu,
                "wall_hours_per_job": wall,
                "note": note,
            }
        )

    if tars:
        listed = shard_rows * per_job
        stage(
            "list tars",
            jobs,
            listed,
            manifest_read,  # it holds its block's listing, as every later job of the block reads it
            0.0,  # the listings are the pool's metadata (the disk line below)
            start + rows / rates["listing_rows_per_s"] / 3600,
            note=f"each job its block of tars' small members; {LISTING_PROCESSES} processes (measured efficiency)",
            threads=LISTING_PROCESSES * rates["listing_process_efficiency"],
            manifest=0.0,
        )
        stage(
            "table of listings",
            1,
            rows,
            table_memory(rows, listed) * 1e6,
            0.0,
            (rates["job_start_s"] + rows / rates["listing_table_rows_per_s"]) / 3600,
            note="every key hashed once: none may repeat",
            manifest=0.0,
        )
    methods = {name: m for name, m in config["methods"].items() if m["kind"] == "retrieve" and m["backend"] == "local"}
    # augbench.embed holds a job's whole block of vectors, in chunks and then joined (twice the bytes).
    embedded_block = 2 * shard_rows * per_job * dim * 4.0
    if not precomputed:
        stage(
            "embed images",
            jobs,
            shard_rows * per_job,
            embedded_block,
            rows * dim * 4.0,
            start,
            rows / rates["embed_images_per_gpu_s"] / 3600,
            "float32 files (float16 would halve them)",
        )
        if any(m.get("index") == "caption" for m in methods.values()):
            stage(
                "embed captions",
                jobs,
                shard_rows * per_job,
                embedded_block,
                rows * dim * 4.0,
                start,
                rows / rates["embed_captions_per_gpu_s"] / 3600,
            )
    pairs = rows * sum(references)
    on_gpu = rates.get(
        "flat_pairs_per_gpu_s", math.nan
    )  # exact search on a GPU: what screening or searching would take there
    stage(
        "screen",
        jobs,
        shard_rows * per_job,
        max(references, default=0) * dim * 4.0 + BLOCK_ROWS * dim * 4.0,
        0.0,
        start + pairs / rates["flat_pairs_per_core_s"] / 3600,
        pairs / on_gpu / 3600,
        note=f"{len(references)} exact copy checks, 8 threads",
        threads=8,
    )
    build = rates["index_core_s_per_1m_rows"] * shard_rows / 1e6 * nlist / MEASURED_NLIST if nlist > 1 else 0.0
    for name, method in methods.items():
        queries = real if method["query"] == "image" else n_classes(config)
        quota = round(real / n_classes(config)) if method["per_class"] is None else method["per_class"]
        share = -(-quota // (real // n_classes(config))) if method["query"] == "image" else quota
        depth = math.ceil(share * method["overfetch"]) * 4  # augbench.sharded_retrieval: round 0 is 4 x the first
        nprobe = method["nprobe"] or default_nprobe(factory)
        scanned = queries * (shard_rows * nprobe / nlist if nlist > 1 else shard_rows)
        rate = rates["ivf_pairs_per_core_s"] if nlist > 1 else rates["flat_pairs_per_core_s"]
        sample = training_sample_size(shard_rows, nlist) * dim * 4.0 if nlist > 1 else 0.0
        lists = 3 * queries * depth * CANDIDATE_BYTES
        memory = index_bytes(shard_rows, dim, factory) + sample + BLOCK_ROWS * dim * 4.0 + lists
        cpu = start + shards * (build + scanned / rate) / 3600
        if nlist > 1 and "ivf_pairs_per_gpu_s" in rates:
            gpu = shards * scanned / rates["ivf_pairs_per_gpu_s"] / 3600
        else:
            gpu = shards * queries * shard_rows / on_gpu / 3600  # exact on the GPU: an upper bound for IVF
        stage(
            f"search {name}",
            jobs,
            shard_rows * per_job,
            memory,
            jobs * queries * depth * CANDIDATE_BYTES,
            cpu,
            gpu,
            f"{queries:,} queries, depth {depth}, nprobe {nprobe}, 1 thread;"
            f" indexing {shards * build / 3600:,.1f} of the CPU hours",
        )
        stage(
            f"merge {name}",
            1,
            0,
            9 * queries * depth * CANDIDATE_BYTES,
            0.0,
            rates["job_start_s"] / 3600,
            math.nan,
            manifest=0.0,
        )
    if datacomp:
        shipped = rows * (2 * 768 + 2 * 512) * 2.0  # l14_img, l14_txt, b32_img, b32_txt in float16
    elif precomputed:
        shipped = rows * dim * 2 * 2.0
    else:
        shipped = 0.0
    disk = {
        "shard_rows": shard_rows,
        "index": factory,
        "embeddings_fp32_gb": rows
        * dim
        * 4
        / 1e9
        * (2 if any(m.get("index") == "caption" for m in methods.values()) else 1),
        "shipped_embeddings_gb": shipped / 1e9,
        "index_per_shard_gb": index_bytes(shard_rows, dim, factory) / 1e9,
        "indexes_if_stored_gb": shards * index_bytes(shard_rows, dim, factory) / 1e9,
        "metadata_gb": rows * (rates["metadata_bytes_per_row"] if parts else rates["manifest_bytes_per_row"]) / 1e9,
    }
    disk["embeddings_fp16_gb"] = disk["embeddings_fp32_gb"] / 2
    if precomputed:
        disk["embeddings_fp32_gb"] = disk["embeddings_fp16_gb"] = 0.0  # read where they lie, nothing embedded
    return stages, disk


def render_pool_plan(stages: list[dict], disk: dict, sources: dict[str, tuple[float, str]], title: str) -> str:
    lines = [
        f"{title}: shards of {disk['shard_rows']:,} rows, index {disk['index']} "
        f"({disk['index_per_shard_gb']:.2f} GB a shard; not stored, each job builds its own: "
        f"{disk['indexes_if_stored_gb']:,.0f} GB if stored)",
        "",
        "| stage | jobs | rows a job | memory a job: index, vectors, lists (GB) | + manifest read (GB) | disk (GB) "
        "| CPU hours | GPU hours | hours a job | note |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in stages:
        gpu = "-" if math.isnan(row["gpu_hours"]) else f"{row['gpu_hours']:,.1f}"
        job_rows = f"{row['rows_per_job']:,}" if row["rows_per_job"] else "-"
        lines.append(
            f"| {row['stage']} | {row['jobs']:,} | {job_rows} | {row['memory_gb']:,.2f} | "
            f"{row['manifest_gb']:,.1f} | {row['disk_gb']:,.1f} | {row['cpu_hours']:,.1f} | {gpu} | "
            f"{row['wall_hours_per_job']:,.2f} | {row['note']} |"
        )
    total_cpu = sum(row["cpu_hours"] for row in stages)
    total_gpu = sum(
        row["gpu_hours"] for row in stages if not math.isnan(row["gpu_hours"]) and row["stage"].startswith("embed")
    )
    embedded = (
        f"embeddings made here {disk['embeddings_fp32_gb']:,.0f} GB in float32"
        f" ({disk['embeddings_fp16_gb']:,.0f} GB in float16)"
        if disk["embeddings_fp32_gb"]
        else f"embeddings as shipped {disk['shipped_embeddings_gb']:,.0f} GB, read where they lie"
    )
    lines += [
        f"| pool stages | {sum(row['jobs'] for row in stages):,} | | | "
        f"| {sum(row['disk_gb'] for row in stages):,.1f} | "
        f"{total_cpu:,.1f} | {total_gpu:,.1f} (embedding) | | |",
        "",
        f"Disk: {embedded}; metadata about {disk['metadata_gb']:,.0f} GB; candidate files as in the table.",
        "",
        "Rates:",
    ]
    lines += [f"- {name} = {value:,.4g}: {source}" for name, (value, source) in sources.items()]
    return "\n".join(lines) + "\n"


def pool_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="cost_model.py pool", description="A pool in shards, on paper.")
    parser.add_argument("--config", required=True)
    parser.add_argument("--rows", type=float, required=True, help="the pool's rows (2.1e9 for Re-LAION-2B-en)")
    parser.add_argument("--measured", default=str(HERE / "latest.json"), help="make bench's figures (CPU rates)")
    parser.add_argument("--gpu", help="gpu.sh's JSON, for the embedding and GPU search rates")
    parser.add_argument("--train-images", type=int, default=IMAGENET_TRAIN)
    parser.add_argument("--val-images", type=int, default=IMAGENET_VAL)
    for name, value in ASSUMED.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=float, default=value, help=f"assumed: {value}")
    args = parser.parse_args(argv)
    gpu = json.loads(Path(args.gpu).read_text()) if args.gpu else None
    sources = measured_rates(json.loads(Path(args.measured).read_text())) | gpu_rates(gpu)
    for name in ASSUMED:
        given = getattr(args, name)
        if name not in sources or given != ASSUMED[name]:
            sources[name] = (given, "assumed" if given == ASSUMED[name] else "given")
    rates = {name: value for name, (value, _) in sources.items()}
    config = resolved_config(args.config)
    stages, disk = pool_plan(config, int(args.rows), rates, args.train_images, args.val_images)
    title = f"{Path(args.config).name}, {int(args.rows):,} pool rows"
    print(render_pool_plan(stages, disk, sources, title), end="")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["pool"]:
        return pool_main(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpu", required=True, help="the JSON benchmarks/gpu.sh wrote")
    parser.add_argument("--config", default=str(REPO / "configs" / "imagenet10.yaml"))
    parser.add_argument("--train-images", type=int, default=IMAGENET_TRAIN, help="the full training set's size")
    parser.add_argument("--val-images", type=int, default=IMAGENET_VAL)
    parser.add_argument("--pool-images", type=int, default=1_000_000, help="the pool embedded (shared by methods)")
    args = parser.parse_args(argv)
    gpu = json.loads(Path(args.gpu).read_text())
    if gpu.get("smoke"):
        parser.error(f"{args.gpu} holds gpu.py --smoke figures (tiny sizes): the cost model needs a GPU run")
    speed = throughputs(gpu)
    config = resolved_config(args.config)
    hours = method_hours(config, speed, args.train_images, args.val_images)
    real = real_images(config, args.train_images)
    shared = shared_hours(speed, args.pool_images, real, args.val_images)
    print(render(dry_run_jobs(args.config), hours, shared, gpu.get("device", "GPU")), end="")


if __name__ == "__main__":
    main()
