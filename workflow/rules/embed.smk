rule embed_pool:
    input:
        manifest=lambda wildcards: STUDY.pool_embedded(wildcards.shard),
        model=clip_inputs,
    output:
        embeddings=f"{RESULTS}/embed/pool_images/shard{{shard}}.npy",
        unreadable=f"{RESULTS}/embed/pool_images/shard{{shard}}.unreadable.csv",
    log:
        f"{LOGS}/embed/pool_images/shard{{shard}}.log",
    wildcard_constraints:
        shard=r"\d+",
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=grows(8000),
        runtime=grows(120),
        gpu=GPUS["embed_pool"],
    params:
        usage=benchmark_of("embed_pool", "shard{shard}"),
        block=lambda wildcards: cli_options(STUDY.pool_embedded_block(wildcards.shard)),
        options=cli_options({**config["clip"], "device": config["device"]}),
    shell:
        "python -m augbench.usage --record {params.usage} --"
        " python -m augbench.embed images --manifest {input.manifest} --out {output.embeddings}"
        " --unreadable {output.unreadable} {params.block} {params.options}"
        " --threads {threads} > {log} 2>&1"


rule embed_prompts:
    input:
        classes=CLASSES,
        model=clip_inputs,
    output:
        PATHS.class_prompts,
    log:
        f"{LOGS}/embed/class_prompts.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=grows(4000),
        runtime=grows(20),
    params:
        options=cli_options(
            {
                "model": config["clip"]["model"],
                "pretrained": config["clip"]["pretrained"],
                "template": config["prompt_template"],
                "device": config["device"],
            }
        ),
    shell:
        "python -m augbench.embed prompts --classes {input.classes} --out {output}"
        " {params.options} --threads {threads} > {log} 2>&1"


rule embed_pool_captions:
    input:
        manifest=lambda wildcards: STUDY.pool_embedded(wildcards.shard),
        model=clip_inputs,
    output:
        f"{RESULTS}/embed/pool_captions/shard{{shard}}.npy",
    log:
        f"{LOGS}/embed/pool_captions/shard{{shard}}.log",
    wildcard_constraints:
        shard=r"\d+",
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=grows(8000),
        runtime=grows(60),
        gpu=GPUS["embed_pool_captions"],
    params:
        usage=benchmark_of("embed_pool_captions", "shard{shard}"),
        block=lambda wildcards: cli_options(STUDY.pool_embedded_block(wildcards.shard)),
        options=cli_options(
            {
                "model": config["clip"]["model"],
                "pretrained": config["clip"]["pretrained"],
                "device": config["device"],
            }
        ),
    shell:
        "python -m augbench.usage --record {params.usage} --"
        " python -m augbench.embed captions --manifest {input.manifest} --out {output}"
        " {params.block} {params.options} --threads {threads} > {log} 2>&1"


rule embed_subset:
    input:
        manifest=rules.subset.output.subset,
        model=clip_inputs,
    output:
        PATHS.subset_embeddings,
    log:
        f"{LOGS}/embed/subset_images.log",
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=grows(8000),
        runtime=grows(60),
        gpu=GPUS["embed_subset"],
    params:
        usage=benchmark_of("embed_subset", "embed_subset"),
        options=cli_options({**config["clip"], "device": config["device"]}),
    shell:
        "python -m augbench.usage --record {params.usage} --"
        " python -m augbench.embed images --manifest {input.manifest} --out {output}"
        " {params.options} --threads {threads} > {log} 2>&1"


rule embed_val:
    input:
        manifest=PATHS.val_manifest,
        model=clip_inputs,
    output:
        PATHS.val_embeddings,
    log:
        f"{LOGS}/embed/val_images.log",
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=grows(8000),
        runtime=grows(60),
        gpu=GPUS["embed_val"],
    params:
        usage=benchmark_of("embed_val", "embed_val"),
        options=cli_options({**config["clip"], "device": config["device"]}),
    shell:
        "python -m augbench.usage --record {params.usage} --"
        " python -m augbench.embed images --manifest {input.manifest} --out {output}"
        " {params.options} --threads {threads} > {log} 2>&1"
