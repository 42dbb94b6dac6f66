rule aggregate:
    input:
        metrics=expand(
            f"{RESULTS}/metrics/{{method}}/seed{{seed}}.json",
            method=METHODS,
            seed=SEEDS,
        ),
        added=[
            f"{RESULTS}/added/{method}/manifest.csv"
            for method in METHODS
            if adds_images(method)
        ],
        unreadable=[path for paths in unreadable_lists().values() for path in paths],
        classes=config["dataset"]["classes"],
    output:
        csv=f"{RESULTS}/summary.csv",
        md=f"{RESULTS}/summary.md",
        unreadable=f"{RESULTS}/unreadable.csv",
    log:
        f"{LOGS}/aggregate.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=grows(2000),
        runtime=grows(10),
    params:
        out_dir=lambda wildcards, output: Path(output.csv).parent,
        kinds=[f"{name}={params['kind']}" for name, params in METHODS.items()],
        added=lambda wildcards, input: [
            f"{Path(path).parent.name}={path}" for path in input.added
        ],
        unreadable=cli_options(
            {
                "unreadable": [
                    f"{stage}={path}"
                    for stage, paths in unreadable_lists().items()
                    for path in paths
                ]
            }
        ),
    shell:
        "python -m augbench.aggregate --metrics {input.metrics}"
        " --method-kinds {params.kinds} --added {params.added} {params.unreadable}"
        " --classes {input.classes} --out-dir {params.out_dir} > {log} 2>&1"
