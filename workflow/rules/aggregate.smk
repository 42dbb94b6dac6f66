rule aggregate:
    input:
        metrics=expand(
            f"{RESULTS}/metrics/{{method}}/seed{{seed}}.json", method=METHODS, seed=SEEDS
        ),
        added=[
            f"{RESULTS}/added/{method}/manifest.csv"
            for method in METHODS
            if METHODS[method]["kind"] != "real"
        ],
        classes=config["dataset"]["classes"],
    output:
        csv=f"{RESULTS}/summary.csv",
        md=f"{RESULTS}/summary.md",
    params:
        kinds=" ".join(f"{name}={params['kind']}" for name, params in METHODS.items()),
        added=lambda wildcards, input: " ".join(
            f"{Path(path).parent.name}={path}" for path in input.added
        ),
    log:
        f"{LOGS}/aggregate.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        ENV
    shell:
        "python -m augbench.aggregate --metrics {input.metrics}"
        " --method-kinds {params.kinds} --added {params.added}"
        " --n-classes $(grep -c . {input.classes})"
        " --out-dir {RESULTS} > {log} 2>&1"
