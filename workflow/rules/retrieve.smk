rule retrieve:
    input:
        pool=config["pool"]["manifest"],
        pool_embeddings=rules.embed_pool.output,
        queries=rules.embed_prompts.output,
        subset=rules.subset.output.subset,
        classes=config["dataset"]["classes"],
    output:
        manifest=f"{RESULTS}/added/{{method}}/manifest.csv",
    wildcard_constraints:
        method=alternation(methods_of("retrieve")),
    params:
        per_class=optional("--per-class", config["augment"]["per_class"]),
        overfetch=lambda wildcards: METHODS[wildcards.method]["overfetch"],
    log:
        f"{LOGS}/retrieve/{{method}}.log",
    benchmark:
        f"{BENCHMARKS}/retrieve/{{method}}.tsv"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=30,
    conda:
        ENV
    shell:
        "python -m augbench.retrieve --pool {input.pool}"
        " --pool-embeddings {input.pool_embeddings} --queries {input.queries}"
        " --subset {input.subset} --classes {input.classes} {params.per_class}"
        " --overfetch {params.overfetch} --out {output.manifest} > {log} 2>&1"
