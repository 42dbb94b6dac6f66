rule personalise:
    input:
        model=diffusion_inputs,
        classes=config["dataset"]["classes"],
        subset=rules.subset.output.subset,
        # Clusters of a class's images come from their CLIP image embeddings.
        embeddings=lambda wildcards: (
            rules.embed_subset.output
            if personalisation_of(wildcards.method)["clusters"] > 1
            else []
        ),
    output:
        f"{RESULTS}/personalised/{{method}}/shard{{shard}}.safetensors",
    log:
        f"{LOGS}/personalise/{{method}}/shard{{shard}}.log",
    benchmark:
        benchmark_of("personalise", "{method}/shard{shard}")
    wildcard_constraints:
        method=alternation(personalised_methods()),
        shard=r"\d+",
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=grows(32000),
        runtime=grows(720),
        gpu=GPUS["personalise"],
    params:
        # From wildcards only (not input), so Snakemake records them and reruns a job when they change.
        options=lambda wildcards: cli_options(
            {
                "model": config["diffusion"]["model"],
                "revision": config["diffusion"]["revision"],
                "template": config["prompt_template"],
                "device": config["device"],
                "embeddings": (
                    rules.embed_subset.output[0]
                    if personalisation_of(wildcards.method)["clusters"] > 1
                    else None
                ),
                "shards": len(personalisation_files(wildcards.method)),
                **personalisation_options(wildcards.method),
            }
        ),
    shell:
        "python -m augbench.personalise --classes {input.classes} --subset {input.subset}"
        " --shard {wildcards.shard} --out {output} {params.options}"
        " --threads {threads} > {log} 2>&1"
