# The pool in the layouts people have it in (see augbench.study.Paths and augbench.pool).

from augbench.pool import LISTING_PROCESSES, table_memory_mb

if STUDY.pool_shards:

    rule list_pool:
        input:
            lambda wildcards: STUDY.pool_shard_files(),
        output:
            PATHS.pool_webdataset,
        log:
            f"{LOGS}/data/pool_webdataset.log",
        conda:
            ENV
        threads: LISTING_PROCESSES
        resources:
            mem_mb=grows(8000),
            runtime=grows(120),
        params:
            shards=cli_options({"shards": config["pool"]["manifest"]}),
        shell:
            "python -m augbench.pool webdataset {params.shards} --out {output}"
            " --threads {threads} > {log} 2>&1"


if STUDY.pool_listing_table:

    # Thousands of tars: each pool job's block of them is listed by a job of its own, and every later
    # job of that block reads its listing alone (the whole listing above is only made where asked for).
    rule list_pool_shard:
        input:
            lambda wildcards: STUDY.pool_listing_files(wildcards.shard),
        output:
            STUDY.pool_listing("{shard}"),
        log:
            f"{LOGS}/data/pool_listings/shard{{shard}}.log",
        wildcard_constraints:
            shard=r"\d+",
        conda:
            ENV
        # Tars listed at once, a process each (augbench.pool: threads would share Python's GIL).
        threads: LISTING_PROCESSES
        resources:
            mem_mb=grows(16000),
            runtime=grows(120),
        params:
            shards=cli_options(
                {"shards": config["pool"]["manifest"], "of": STUDY.pool_jobs}
            ),
        shell:
            "python -m augbench.pool webdataset {params.shards} --shard {wildcards.shard}"
            " --out {output} --threads {threads} > {log} 2>&1"

    # The listings' rows and first pool rows, once no sample key repeats across them.
    rule list_pool_table:
        input:
            [STUDY.pool_listing(shard) for shard in range(STUDY.pool_jobs)],
        output:
            STUDY.pool_listing_table,
        log:
            f"{LOGS}/data/pool_listings.log",
        conda:
            ENV
        threads: 1
        resources:
            # Every row's key hash at once: counted from the listings when the job starts.
            mem_mb=lambda wildcards, input, attempt: table_memory_mb(list(input))
            * attempt,
            runtime=grows(60),
        params:
            listings=lambda wildcards, input: cli_options({"listing": list(input)}),
        shell:
            "python -m augbench.pool table {params.listings} --out {output} > {log} 2>&1"


if STUDY.pool_parts_table:

    # A pool whose embeddings ship in parts (pool.embeddings): each part is a shard, read where it lies.
    rule list_pool_parts:
        input:
            folder=STUDY.pool_clip_retrieval,
            model=clip_inputs,
        output:
            STUDY.pool_parts_table,
        log:
            f"{LOGS}/data/pool_parts.log",
        conda:
            ENV
        threads: 2
        resources:
            mem_mb=grows(8000),
            runtime=grows(120),
        params:
            options=cli_options(
                {
                    "layout": config["pool"]["embeddings_layout"],
                    "model": config["clip"]["model"],
                    "pretrained": config["clip"]["pretrained"],
                    "shards": config["pool"]["shards"],
                }
            ),
        shell:
            "python -m augbench.precomputed --folder {input.folder} --out {output}"
            " {params.options} > {log} 2>&1"


if STUDY.pool_clip_retrieval and not STUDY.pool_parts_table:

    # The clip-retrieval folder stands in for embedding the pool (embed_pool): one shard.
    rule pool_from_clip_retrieval:
        input:
            folder=STUDY.pool_clip_retrieval,
            webdataset=[PATHS.pool_webdataset] if STUDY.pool_shards else [],
            model=clip_inputs,
        output:
            manifest=PATHS.pool_manifest,
            images=PATHS.pool_image_embeddings,
            unreadable=PATHS.pool_clip_retrieval_unreadable,
            captions=(
                [PATHS.pool_caption_embeddings]
                if STUDY.pool_captions_searched()
                else []
            ),
        log:
            f"{LOGS}/data/pool_clip_retrieval.log",
        conda:
            ENV
        threads: 2
        resources:
            mem_mb=grows(16000),
            runtime=grows(120),
        params:
            options=lambda wildcards, input, output: cli_options(
                {
                    "model": config["clip"]["model"],
                    "pretrained": config["clip"]["pretrained"],
                    "webdataset": input.webdataset or None,
                    "captions": output.captions or None,
                }
            ),
        shell:
            "python -m augbench.pool clip-retrieval --folder {input.folder} --out {output.manifest}"
            " --images {output.images} --unreadable {output.unreadable} {params.options}"
            " > {log} 2>&1"
