rule generate:
    input:
        unpack(zero_shot_inputs),
        unpack(clip_filter_inputs),
        model=diffusion_inputs,
        classes=config["dataset"]["classes"],
        subset=rules.subset.output.subset,
        personalisation=lambda wildcards: personalisation_files(wildcards.method),
    output:
        manifest=f"{RESULTS}/added/{{method}}/shards/shard{{shard}}.csv",
    log:
        f"{LOGS}/generate/{{method}}/shard{{shard}}.log",
    benchmark:
        benchmark_of("generate", "{method}/shard{shard}")
    wildcard_constraints:
        method=alternation(methods_of("generate")),
        shard=r"\d+",
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=grows(16000),
        runtime=grows(720),
        gpu=GPUS["generate"],
    params:
        out_dir=lambda wildcards: f"{RESULTS}/added/{wildcards.method}",
        # From wildcards only (not input), so Snakemake records them and reruns a job when they change.
        options=lambda wildcards: cli_options(
            {
                **config["diffusion"],
                "template": config["prompt_template"],
                "per_class": added_per_class(wildcards.method),
                "device": config["device"],
                "method": wildcards.method,
                "shards": METHODS[wildcards.method]["shards"],
                **{key: METHODS[wildcards.method][key] for key in GENERATE_OPTIONS},
                "personalisation": personalisation_files(wildcards.method) or None,
                **personalisation_checks(wildcards.method),
                **zero_shot_options(wildcards.method),
                **clip_filter_options(wildcards.method),
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
        quality=f"{RESULTS}/added/{{method}}/quality.csv",
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
        options=lambda wildcards: cli_options(
            {
                "shard": generation_shards(wildcards.method),
                "per_class": added_per_class(wildcards.method),
                "zero_shot_keep": METHODS[wildcards.method]["zero_shot_keep"],
            }
        ),
    shell:
        "python -m augbench.collect manifests --subset {input.subset} --classes {input.classes}"
        " --out {output.manifest} --quality {output.quality} {params.options} > {log} 2>&1"
