rule screen_pool:
    input:
        unpack(pool_screen_inputs),
        pool=POOL_MANIFEST,
        pool_embeddings=POOL_IMAGE_EMBEDDINGS,
    output:
        excluded=POOL_EXCLUDED,
    log:
        f"{LOGS}/retrieve/screen_pool.log",
    benchmark:
        benchmark_of("screen_pool", "screen_pool")
    conda:
        ENV
    # faiss searches on every thread the job has.
    threads: 8
    resources:
        mem_mb=grows(8000),
        runtime=grows(60),
    params:
        references=lambda wildcards, input: cli_options(
            {key: input[key] for key in pool_screen_inputs()}
        ),
        options=cli_options(
            {
                **config["contamination"],
                "safety_column": config["pool"]["safety_column"],
                "drop_safety_values": ",".join(config["pool"]["drop_safety_values"]),
                "index_memory_gb": config["pool"]["index_memory_gb"],
            }
        ),
    shell:
        "python -m augbench.exclude --pool {input.pool}"
        " --pool-embeddings {input.pool_embeddings} --out {output.excluded}"
        " {params.references} {params.options} > {log} 2>&1"


rule retrieve:
    input:
        unpack(clip_filter_inputs),
        pool=POOL_MANIFEST,
        pool_embeddings=lambda wildcards: (
            f"{RESULTS}/embed/pool_captions.npy"
            if METHODS[wildcards.method]["index"] == "caption"
            else POOL_IMAGE_EMBEDDINGS
        ),
        queries=lambda wildcards: (
            rules.embed_subset.output
            if METHODS[wildcards.method]["query"] == "image"
            else rules.embed_prompts.output
        ),
        # Unreadable and identical pool images are told by their image embeddings, whatever is searched.
        image_embeddings=POOL_IMAGE_EMBEDDINGS,
        excluded=POOL_EXCLUDED,
        subset=rules.subset.output.subset,
        classes=config["dataset"]["classes"],
    output:
        manifest=f"{RESULTS}/added/{{method}}/manifest.csv",
        quality=f"{RESULTS}/added/{{method}}/quality.csv",
    log:
        f"{LOGS}/retrieve/{{method}}.log",
    benchmark:
        benchmark_of("retrieve", "{method}/retrieve")
    wildcard_constraints:
        method=alternation(retrieval_methods("local", download=False)),
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=grows(8000),
        runtime=grows(30),
    params:
        # From wildcards only (not input), so Snakemake records them and reruns a job when they change.
        options=lambda wildcards: cli_options(
            {
                "per_class": added_per_class(wildcards.method),
                "overfetch": METHODS[wildcards.method]["overfetch"],
                "dedup": METHODS[wildcards.method]["dedup"],
                "search": METHODS[wildcards.method]["search"],
                "nprobe": METHODS[wildcards.method]["nprobe"],
                "index_memory_gb": config["pool"]["index_memory_gb"],
                # A pool of URLs: candidates for the download step, more than the quota.
                "candidate_factor": (
                    METHODS[wildcards.method]["download"]["factor"]
                    if downloads(wildcards.method)
                    else None
                ),
                "image_embeddings": POOL_IMAGE_EMBEDDINGS,
                # Image queries take their class from the subset's rows.
                "query_manifest": (
                    rules.subset.output.subset
                    if METHODS[wildcards.method]["query"] == "image"
                    else None
                ),
                **clip_filter_options(wildcards.method),
            }
        ),
    shell:
        "python -m augbench.retrieve --pool {input.pool}"
        " --pool-embeddings {input.pool_embeddings} --queries {input.queries}"
        " --subset {input.subset} --classes {input.classes}"
        " --exclude {input.excluded} --out {output.manifest} --quality {output.quality}"
        " {params.options} > {log} 2>&1"


# A pool of URLs (a url column): the local search writes candidates, which are downloaded.
use rule retrieve as retrieve_urls with:
    output:
        manifest=f"{RESULTS}/added/{{method}}/candidates.csv",
        quality=f"{RESULTS}/added/{{method}}/quality.csv",
    wildcard_constraints:
        method=alternation(retrieval_methods("local", download=True)),


rule retrieve_service:
    input:
        queries=lambda wildcards: service_query_embeddings(wildcards.method),
        subset=rules.subset.output.subset,
        classes=config["dataset"]["classes"],
    output:
        candidates=f"{RESULTS}/added/{{method}}/candidates.csv",
    log:
        f"{LOGS}/retrieve/{{method}}.log",
    benchmark:
        benchmark_of("retrieve", "{method}/retrieve")
    wildcard_constraints:
        method=alternation(retrieval_methods("clip_service", download=True)),
    conda:
        CLIP_SERVICE_ENV
    threads: 1
    resources:
        mem_mb=grows(2000),
        runtime=grows(60),
    params:
        python=lambda wildcards: METHODS[wildcards.method]["service"]["python"]
        or "python",
        source=SOURCE,
        options=lambda wildcards: service_options(wildcards.method),
    shell:
        "PYTHONPATH={params.source}${{PYTHONPATH:+:$PYTHONPATH}} {params.python} -m augbench.knn_service"
        " --subset {input.subset} --classes {input.classes}"
        " --out {output.candidates} {params.options} > {log} 2>&1"


rule download:
    input:
        candidates=f"{RESULTS}/added/{{method}}/candidates.csv",
        subset=rules.subset.output.subset,
        classes=config["dataset"]["classes"],
    output:
        downloaded=f"{RESULTS}/added/{{method}}/downloaded.csv",
        failures=f"{RESULTS}/added/{{method}}/download_failures.csv",
    log:
        f"{LOGS}/download/{{method}}.log",
    benchmark:
        benchmark_of("download", "{method}/download")
    wildcard_constraints:
        method=alternation(download_methods()),
    conda:
        DOWNLOAD_ENV
    threads: 1
    resources:
        mem_mb=grows(4000),
        runtime=grows(120),
    params:
        python=lambda wildcards: METHODS[wildcards.method]["download"]["python"]
        or "python",
        source=SOURCE,
        images=lambda wildcards: f"{RESULTS}/added/{wildcards.method}/images",
        options=lambda wildcards: cli_options(
            {
                "per_class": added_per_class(wildcards.method),
                **{
                    key: METHODS[wildcards.method]["download"][key]
                    for key in ("threads", "timeout", "retries", "image_size")
                },
            }
        ),
    shell:
        "PYTHONPATH={params.source}${{PYTHONPATH:+:$PYTHONPATH}} {params.python} -m augbench.download"
        " --candidates {input.candidates} --subset {input.subset} --classes {input.classes}"
        " --images-dir {params.images} --out {output.downloaded} --failures {output.failures}"
        " {params.options} > {log} 2>&1"


# Downloaded images were not in a pool screened here: their copies of evaluation and
# training images are found once they are files, before each class keeps its quota.
rule screen_downloads:
    input:
        unpack(pool_screen_inputs),
        downloaded=rules.download.output.downloaded,
        subset=rules.subset.output.subset,
        classes=config["dataset"]["classes"],
        model=clip_inputs,
    output:
        manifest=f"{RESULTS}/added/{{method}}/manifest.csv",
        excluded=f"{RESULTS}/added/{{method}}/excluded.csv",
    log:
        f"{LOGS}/screen_downloads/{{method}}.log",
    benchmark:
        benchmark_of("screen_downloads", "{method}/screen_downloads")
    wildcard_constraints:
        method=alternation(download_methods()),
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=grows(8000),
        runtime=grows(60),
        gpu=GPUS["screen_downloads"],
    params:
        references=lambda wildcards, input: cli_options(
            {key: input[key] for key in pool_screen_inputs()}
        ),
        options=lambda wildcards: cli_options(
            {
                "per_class": added_per_class(wildcards.method),
                **config["contamination"],
                **config["clip"],
                "device": config["device"],
                "index_memory_gb": config["pool"]["index_memory_gb"],
            }
        ),
    shell:
        "python -m augbench.screen_downloads --downloaded {input.downloaded}"
        " --subset {input.subset} --classes {input.classes} --out {output.manifest}"
        " --excluded {output.excluded} {params.references} {params.options}"
        " --threads {threads} > {log} 2>&1"
