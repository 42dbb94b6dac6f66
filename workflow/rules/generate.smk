rule generate:
    input:
        unpack(zero_shot_inputs),
        unpack(clip_filter_inputs),
        model=diffusion_inputs,
        classes=CLASSES,
        subset=rules.subset.output.subset,
        personalisation=lambda wildcards: STUDY.personalisation_files(wildcards.method),
    output:
        manifest=f"{RESULTS}/added/{{method}}/shards/shard{{shard}}.csv",
    log:
        f"{LOGS}/generate/{{method}}/shard{{shard}}.log",
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
        usage=benchmark_of("generate", "{method}/shard{shard}"),
        out_dir=lambda wildcards: f"{RESULTS}/added/{wildcards.method}",
        options=method_options(STUDY.generation_options),
    shell:
        "python -m augbench.usage --record {params.usage} --"
        " python -m augbench.generate --classes {input.classes} --subset {input.subset}"
        " --out-dir {params.out_dir} --manifest {output.manifest} --shard {wildcards.shard}"
        " {params.options} --threads {threads} > {log} 2>&1"


rule collect_generated:
    input:
        shards=lambda wildcards: STUDY.generation_shards(wildcards.method),
        subset=rules.subset.output.subset,
        classes=CLASSES,
    output:
        manifest=STUDY.added_manifest("{method}"),
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
                "shard": STUDY.generation_shards(wildcards.method),
                "per_class": STUDY.added_per_class(wildcards.method),
                "zero_shot_keep": METHODS[wildcards.method]["zero_shot_keep"],
            }
        ),
    shell:
        "python -m augbench.collect manifests --subset {input.subset} --classes {input.classes}"
        " --out {output.manifest} --quality {output.quality} {params.options} > {log} 2>&1"
