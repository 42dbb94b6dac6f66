rule evaluate:
    input:
        weights=rules.train.output.weights,
        recipe=rules.train.output.recipe,
        val=PATHS.val_manifest,
        classes=CLASSES,
        # Further evaluation sets (evaluation_sets), read by the same job: no job per set.
        evaluation_sets=STUDY.evaluation_set_inputs(),
    output:
        each_seed(f"{RESULTS}/metrics/{{method}}/seed{{seed}}.json"),
    log:
        f"{LOGS}/evaluate/{{method}}/{SEED_JOB}.log",
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=grows(8000),
        runtime=grows(60),
    params:
        usage=benchmark_of("evaluate", f"{{method}}/{SEED_JOB}"),
        models=lambda wildcards, input, output: cli_options(
            {"model": input.weights, "out": output}
        ),
        options=cli_options(
            {
                "device": config["device"],
                "num_workers": config["classifier"]["num_workers"],
                **STUDY.evaluation_set_options(),
            }
        ),
    shell:
        "python -m augbench.usage --record {params.usage} --"
        " python -m augbench.evaluate {params.models} --manifest {input.val}"
        " --classes {input.classes} {params.options}"
        " --threads {threads} > {log} 2>&1"
