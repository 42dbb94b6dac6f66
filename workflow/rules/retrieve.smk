# The pool in pool.shards blocks of rows: each is screened and searched by its own jobs (none
# reads another shard's vectors); a merge per method joins the shards' candidates.


# A copy check set to auto (contamination.*_threshold) takes the threshold this job calibrates
# to the CLIP on copies planted of its reference images (validation: eval, subset: train).
rule calibrate_copy_threshold:
    input:
        unpack(lambda wildcards: STUDY.copy_check_images(wildcards.check)),
        model=clip_inputs,
    output:
        STUDY.copy_calibration("{check}"),
    log:
        f"{LOGS}/retrieve/calibrate_copy_threshold/{{check}}.log",
    wildcard_constraints:
        check=alternation(STUDY.calibrated_checks()),
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=grows(8000),
        runtime=grows(30),
        gpu=GPUS["calibrate_copy_threshold"],
    params:
        usage=benchmark_of("calibrate_copy_threshold", "{check}"),
        options=cli_options(STUDY.calibration_options()),
    shell:
        "python -m augbench.usage --record {params.usage} --"
        " python -m augbench.copy_calibration --manifest {input.manifest} --embeddings {input.embeddings}"
        " --out {output} {params.options} --threads {threads} > {log} 2>&1"


rule screen_pool:
    input:
        unpack(copy_references),
        pool=STUDY.pool_input()["path"],
        pool_embeddings=lambda wildcards: STUDY.pool_shard_embeddings(
            "images", wildcards.shard
        ),
    output:
        excluded=STUDY.pool_shard_excluded("{shard}"),
    log:
        f"{LOGS}/retrieve/screen_pool/shard{{shard}}.log",
    wildcard_constraints:
        shard=r"\d+",
    conda:
        ENV
    # faiss searches on every thread the job has, or on the GPU where faiss has GPU support.
    threads: 8
    resources:
        mem_mb=grows(8000),
        runtime=grows(60),
        gpu=GPUS["screen_pool"],
    params:
        usage=benchmark_of("screen_pool", "shard{shard}"),
        references=cli_options(STUDY.copy_references()),
        options=cli_options(
            {
                **STUDY.copy_thresholds(),
                "safety_column": config["pool"]["safety_column"],
                "drop_safety_values": ",".join(config["pool"]["drop_safety_values"]),
                "index_memory_gb": config["pool"]["index_memory_gb"],
                "shards": STUDY.pool_jobs,
                "parts": config["pool"]["shards_per_job"],
            }
        ),
        pool=STUDY.pool_input()["flag"],
        embeddings=lambda wildcards, input: cli_options(
            {"pool_embeddings": list(input.pool_embeddings)}
        ),
    shell:
        "python -m augbench.usage --record {params.usage} --"
        " python -m augbench.exclude {params.pool} {input.pool} {params.embeddings}"
        " --out {output.excluded} --shard {wildcards.shard}"
        " {params.references} {params.options} > {log} 2>&1"


rule merge_pool_exclusions:
    input:
        [STUDY.pool_shard_excluded(shard) for shard in range(STUDY.pool_jobs)],
    output:
        PATHS.pool_excluded,
    log:
        f"{LOGS}/retrieve/merge_pool_exclusions.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=grows(4000),
        runtime=grows(30),
    params:
        parts=lambda wildcards, input: cli_options({"part": list(input)}),
    shell:
        "python -m augbench.collect exclusions {params.parts} --out {output} > {log} 2>&1"


rule search_pool_shard:
    input:
        unpack(clip_filter_inputs),
        pool=STUDY.pool_input()["path"],
        pool_embeddings=searched_embeddings,
        queries=query_embeddings,
        # Unreadable and identical pool images are told by their image embeddings, whatever is searched.
        image_embeddings=lambda wildcards: STUDY.pool_shard_embeddings(
            "images", wildcards.shard
        ),
        excluded=lambda wildcards: STUDY.pool_shard_excluded(wildcards.shard),
        subset=rules.subset.output.subset,
        classes=CLASSES,
    output:
        f"{RESULTS}/retrieve/{{method}}/round{{round}}/shard{{shard}}.npz",
    log:
        f"{LOGS}/retrieve/{{method}}/round{{round}}/shard{{shard}}.log",
    wildcard_constraints:
        method=alternation(LOCAL_RETRIEVAL),
        round=r"\d+",
        shard=r"\d+",
    conda:
        ENV
    # Each shard's index is built on the CPU (on every thread the job has) and searched on the
    # GPU where faiss has GPU support (augbench.search).
    threads: 1
    resources:
        mem_mb=grows(8000),
        runtime=grows(30),
        gpu=GPUS["search_pool_shard"],
    params:
        usage=benchmark_of("search_pool_shard", "{method}/round{round}_shard{shard}"),
        options=method_options(STUDY.retrieval_options),
        shards=STUDY.pool_jobs,
        parts=config["pool"]["shards_per_job"],
        pool=STUDY.pool_input()["flag"],
        embeddings=lambda wildcards, input: cli_options(
            {
                "pool_embeddings": list(input.pool_embeddings),
                "image_embeddings": list(input.image_embeddings),
                "index": searched_kind(wildcards),
            }
        ),
    shell:
        "python -m augbench.usage --record {params.usage} --"
        " python -m augbench.sharded_retrieval search {params.pool} {input.pool}"
        " --shard {wildcards.shard} --shards {params.shards} --parts {params.parts} --round {wildcards.round}"
        " {params.embeddings} --exclude {input.excluded} --queries {input.queries} --subset {input.subset}"
        " --classes {input.classes} --out {output} {params.options} > {log} 2>&1"


# A checkpoint: when a class needs deeper lists than the shards gave, the merge names the shards
# to search deeper, and the next round searches only those (see augbench.sharded_retrieval).
checkpoint merge_pool_shards:
    input:
        candidates=shard_candidates,
        pool=STUDY.pool_input()["path"],
        queries=query_embeddings,
        subset=rules.subset.output.subset,
        classes=CLASSES,
    output:
        directory(f"{RESULTS}/retrieve/{{method}}/round{{round}}/merged"),
    log:
        f"{LOGS}/retrieve/{{method}}/round{{round}}/merge.log",
    wildcard_constraints:
        method=alternation(LOCAL_RETRIEVAL),
        round=r"\d+",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=grows(8000),
        runtime=grows(30),
    params:
        usage=benchmark_of("merge_pool_shards", "{method}/round{round}"),
        options=lambda wildcards: cli_options(
            STUDY.retrieval_options(wildcards.method, "merge")
        ),
        pool=STUDY.pool_input()["flag"],
    shell:
        "python -m augbench.usage --record {params.usage} --"
        " python -m augbench.sharded_retrieval merge {params.pool} {input.pool}"
        " --candidates {input.candidates} --queries {input.queries} --subset {input.subset}"
        " --classes {input.classes} --out-dir {output} {params.options} > {log} 2>&1"


rule retrieve:
    input:
        merged=final_merge,
    output:
        manifest=STUDY.added_manifest("{method}"),
        quality=f"{RESULTS}/added/{{method}}/quality.csv",
    log:
        f"{LOGS}/retrieve/{{method}}.log",
    wildcard_constraints:
        method=alternation(STUDY.retrieval_methods("local", download=False)),
    localrule: True
    conda:
        ENV
    shell:
        "cp {input.merged}/added.csv {output.manifest} && cp {input.merged}/quality.csv {output.quality}"
        " > {log} 2>&1"


# A pool of URLs (a url column): the local search writes candidates, which are downloaded.
use rule retrieve as retrieve_urls with:
    output:
        manifest=f"{RESULTS}/added/{{method}}/candidates.csv",
        quality=f"{RESULTS}/added/{{method}}/quality.csv",
    wildcard_constraints:
        method=alternation(STUDY.retrieval_methods("local", download=True)),


rule retrieve_service:
    input:
        queries=lambda wildcards: STUDY.service_query_embeddings(wildcards.method),
        subset=rules.subset.output.subset,
        classes=CLASSES,
    output:
        candidates=f"{RESULTS}/added/{{method}}/candidates.csv",
    log:
        f"{LOGS}/retrieve/{{method}}.log",
    wildcard_constraints:
        method=alternation(STUDY.retrieval_methods("clip_service", download=True)),
    conda:
        CLIP_SERVICE_ENV
    threads: 1
    resources:
        mem_mb=grows(2000),
        runtime=grows(60),
    params:
        usage=benchmark_of("retrieve", "{method}/retrieve"),
        python=lambda wildcards: METHODS[wildcards.method]["service"]["python"]
        or "python",
        source=SOURCE,
        options=method_options(STUDY.service_options),
    shell:
        "PYTHONPATH={params.source}${{PYTHONPATH:+:$PYTHONPATH}} python -m augbench.usage --record {params.usage} --"
        " {params.python} -m augbench.knn_service"
        " --subset {input.subset} --classes {input.classes}"
        " --out {output.candidates} {params.options} > {log} 2>&1"


rule download:
    input:
        candidates=f"{RESULTS}/added/{{method}}/candidates.csv",
        subset=rules.subset.output.subset,
        classes=CLASSES,
    output:
        downloaded=f"{RESULTS}/added/{{method}}/downloaded.csv",
        failures=f"{RESULTS}/added/{{method}}/download_failures.csv",
    log:
        f"{LOGS}/download/{{method}}.log",
    wildcard_constraints:
        method=alternation(STUDY.download_methods()),
    conda:
        DOWNLOAD_ENV
    threads: 1
    resources:
        mem_mb=grows(4000),
        runtime=grows(120),
    params:
        usage=benchmark_of("download", "{method}/download"),
        python=lambda wildcards: METHODS[wildcards.method]["download"]["python"]
        or "python",
        source=SOURCE,
        images=lambda wildcards: f"{RESULTS}/added/{wildcards.method}/images",
        options=method_options(STUDY.download_options),
    shell:
        "PYTHONPATH={params.source}${{PYTHONPATH:+:$PYTHONPATH}} python -m augbench.usage --record {params.usage} --"
        " {params.python} -m augbench.download"
        " --candidates {input.candidates} --subset {input.subset} --classes {input.classes}"
        " --images-dir {params.images} --out {output.downloaded} --failures {output.failures}"
        " {params.options} > {log} 2>&1"


# Downloaded images were not in a pool screened here: their copies of evaluation and
# training images are found once they are files, before each class keeps its quota.
rule screen_downloads:
    input:
        unpack(copy_references),
        downloaded=rules.download.output.downloaded,
        subset=rules.subset.output.subset,
        classes=CLASSES,
        model=clip_inputs,
    output:
        manifest=STUDY.added_manifest("{method}"),
        excluded=f"{RESULTS}/added/{{method}}/excluded.csv",
    log:
        f"{LOGS}/screen_downloads/{{method}}.log",
    wildcard_constraints:
        method=alternation(STUDY.download_methods()),
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=grows(8000),
        runtime=grows(60),
        gpu=GPUS["screen_downloads"],
    params:
        usage=benchmark_of("screen_downloads", "{method}/screen_downloads"),
        references=cli_options(STUDY.copy_references()),
        options=lambda wildcards: cli_options(
            {
                "per_class": STUDY.added_per_class(wildcards.method),
                **STUDY.copy_thresholds(),
                **config["clip"],
                "device": config["device"],
                "index_memory_gb": config["pool"]["index_memory_gb"],
            }
        ),
    shell:
        "python -m augbench.usage --record {params.usage} --"
        " python -m augbench.screen_downloads --downloaded {input.downloaded}"
        " --subset {input.subset} --classes {input.classes} --out {output.manifest}"
        " --excluded {output.excluded} {params.references} {params.options}"
        " --threads {threads} > {log} 2>&1"
