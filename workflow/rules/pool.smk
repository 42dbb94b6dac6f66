# The pool in the layouts people have it in (see POOL_MANIFEST in common.smk and augbench.pool).


if POOL_SHARDS:

    rule list_pool:
        input:
            pool_shard_inputs,
        output:
            POOL_WEBDATASET_MANIFEST,
        log:
            f"{LOGS}/data/pool_webdataset.log",
        conda:
            ENV
        threads: 8
        resources:
            mem_mb=grows(8000),
            runtime=grows(120),
        params:
            shards=cli_options({"shards": config["pool"]["manifest"]}),
        shell:
            "python -m augbench.pool webdataset {params.shards} --out {output}"
            " --threads {threads} > {log} 2>&1"


if POOL_CLIP_RETRIEVAL:

    # The clip-retrieval folder stands in for embedding the pool (embed_pool and its merge).
    ruleorder: pool_from_clip_retrieval > merge_pool_embeddings

    rule pool_from_clip_retrieval:
        input:
            folder=POOL_CLIP_RETRIEVAL,
            webdataset=[POOL_WEBDATASET_MANIFEST] if POOL_SHARDS else [],
            model=clip_inputs,
        output:
            manifest=POOL_MANIFEST,
            images=POOL_IMAGE_EMBEDDINGS,
            unreadable=POOL_CLIP_RETRIEVAL_UNREADABLE,
            captions=(
                [f"{RESULTS}/embed/pool_captions.npy"]
                if pool_captions_searched()
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
