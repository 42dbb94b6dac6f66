rule personalise:
    input:
        model=diffusion_inputs,
        classes=CLASSES,
        subset=rules.subset.output.subset,
        # Clusters of a class's images come from their CLIP image embeddings.
        embeddings=lambda wildcards: (
            PATHS.subset_embeddings if STUDY.clusters(wildcards.method) > 1 else []
        ),
    output:
        f"{RESULTS}/personalised/{{method}}/shard{{shard}}.safetensors",
    log:
        f"{LOGS}/personalise/{{method}}/shard{{shard}}.log",
    wildcard_constraints:
        method=alternation(STUDY.personalised_methods()),
        shard=r"\d+",
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=grows(32000),
        runtime=grows(720),
        gpu=lambda wildcards: STUDY.personalise_processes(wildcards.method),
    params:
        usage=benchmark_of("personalise", "{method}/shard{shard}"),
        # More than one process: the method's GPUs of one node, launched by torchrun.
        launcher=lambda wildcards: STUDY.personalise_launcher(wildcards.method),
        options=method_options(STUDY.personalisation_options),
    shell:
        "python -m augbench.usage --record {params.usage} --"
        " {params.launcher} -m augbench.personalise --classes {input.classes} --subset {input.subset}"
        " --shard {wildcards.shard} --out {output} {params.options}"
        " --threads {threads} > {log} 2>&1"
