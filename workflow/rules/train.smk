rule train:
    input:
        subset=rules.subset.output.subset,
        added=added_images,
        classes=config["dataset"]["classes"],
    output:
        weights=f"{RESULTS}/models/{{method}}/seed{{seed}}.safetensors",
        recipe=f"{RESULTS}/models/{{method}}/seed{{seed}}.json",
    log:
        f"{LOGS}/train/{{method}}/seed{{seed}}.log",
    benchmark:
        f"{BENCHMARKS}/train/{{method}}/seed{{seed}}.tsv"
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=grows(16000),
        runtime=grows(1440),
        gpu=1,
    params:
        manifests=lambda wildcards, input: cli_options(
            {"manifest": [input.subset, *input.added]}
        ),
        options=cli_options({**config["classifier"], "device": config["device"]}),
    shell:
        "python -m augbench.train {params.manifests} --classes {input.classes}"
        " --out {output.weights} --seed {wildcards.seed} {params.options}"
        " --threads {threads} > {log} 2>&1"
