rule generate:
    input:
        unpack(zero_shot_inputs),
        model=diffusion_inputs,
        classes=config["dataset"]["classes"],
        subset=rules.subset.output.subset,
        personalisation=lambda wildcards: personalisation_files(wildcards.method),
    output:
        manifest=f"{RESULTS}/added/{{method}}/shards/shard{{shard}}.csv",
    log:
        f"{LOGS}/generate/{{method}}/shard{{shard}}.log",
    benchmark:
        f"{BENCHMARKS}/generate/{{method}}/shard{{shard}}.tsv"
    wildcard_constraints:
        method=alternation(methods_of("generate")),
        shard=r"\d+",
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=grows(16000),
        runtime=grows(720),
        gpu=1,
    params:
        out_dir=lambda wildcards: f"{RESULTS}/added/{wildcards.method}",
        options=lambda wildcards, input: cli_options(
            {
                **config["diffusion"],
                "template": config["prompt_template"],
                "per_class": config["augment"]["per_class"],
                "device": config["device"],
                "method": wildcards.method,
                "shards": METHODS[wildcards.method]["shards"],
                **{key: METHODS[wildcards.method][key] for key in GENERATE_OPTIONS},
                "personalisation": list(input.personalisation) or None,
                **personalisation_checks(wildcards.method),
                "class_embeddings": input.get("class_prompts"),
                "clip_model": (
                    config["clip"]["model"]
                    if "class_prompts" in input.keys()
                    else None
                ),
                "clip_pretrained": (
                    config["clip"]["pretrained"]
                    if "class_prompts" in input.keys()
                    else None
                ),
            }
        ),
    shell:
        "python -m augbench.generate --classes {input.classes} --subset {input.subset}"
        " --out-dir {params.out_dir} --manifest {output.manifest} --shard {wildcards.shard}"
        " {params.options} --threads {threads} > {log} 2>&1"


rule collect_generated:
    input:
        shards=lambda wildcards: generation_shards(wildcards.method),
        subset=rules.subset.output.subset,
        classes=config["dataset"]["classes"],
    output:
        manifest=f"{RESULTS}/added/{{method}}/manifest.csv",
    log:
        f"{LOGS}/generate/{{method}}/collect.log",
    wildcard_constraints:
        method=alternation(methods_of("generate")),
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=grows(4000),
        runtime=grows(10),
    params:
        options=lambda wildcards, input: cli_options(
            {
                "shard": list(input.shards),
                "per_class": config["augment"]["per_class"],
                "zero_shot_keep": METHODS[wildcards.method]["zero_shot_keep"],
            }
        ),
    shell:
        "python -m augbench.collect manifests --subset {input.subset} --classes {input.classes}"
        " --out {output.manifest} {params.options} > {log} 2>&1"
