rule evaluate:
    input:
        weights=rules.train.output.weights,
        recipe=rules.train.output.recipe,
        val=PATHS.val_manifest,
        classes=CLASSES,
    output:
        f"{RESULTS}/metrics/{{method}}/seed{{seed}}.json",
    log:
        f"{LOGS}/evaluate/{{method}}/seed{{seed}}.log",
    benchmark:
        benchmark_of("evaluate", "{method}/seed{seed}")
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=grows(8000),
        runtime=grows(60),
    params:
        options=cli_options(
            {
                "device": config["device"],
                "num_workers": config["classifier"]["num_workers"],
            }
        ),
    shell:
        "python -m augbench.evaluate --model {input.weights} --manifest {input.val}"
        " --classes {input.classes} --out {output} {params.options}"
        " --threads {threads} > {log} 2>&1"
