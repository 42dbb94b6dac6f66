def added_images(wildcards):
    """The added-image manifest of a method; real-data methods add none."""
    if METHODS[wildcards.method]["kind"] == "real":
        return []
    return f"{RESULTS}/added/{wildcards.method}/manifest.csv"


rule train:
    input:
        subset=rules.subset.output.subset,
        added=added_images,
        classes=config["dataset"]["classes"],
    output:
        weights=f"{RESULTS}/models/{{method}}/seed{{seed}}.safetensors",
        recipe=f"{RESULTS}/models/{{method}}/seed{{seed}}.json",
    params:
        manifests=lambda wildcards, input: " ".join(
            f"--manifest {path}" for path in [input.subset, *input.added]
        ),
        recipe=" ".join(
            f"--{key.replace('_', '-')} {value}"
            for key, value in config["classifier"].items()
        ),
    log:
        f"{LOGS}/train/{{method}}/seed{{seed}}.log",
    benchmark:
        f"{BENCHMARKS}/train/{{method}}/seed{{seed}}.tsv"
    threads: 2
    resources:
        mem_mb=16000,
        runtime=1440,
        gpu=1,
    conda:
        ENV
    shell:
        "python -m augbench.train {params.manifests} --classes {input.classes}"
        " --out {output.weights} --seed {wildcards.seed} {params.recipe}"
        " --device {config[device]} --threads {threads} > {log} 2>&1"
