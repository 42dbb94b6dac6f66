rule train:
    input:
        subset=rules.subset.output.subset,
        added=added_images,
        classes=CLASSES,
        init_weights=config["classifier"]["init_weights"] or [],
    output:
        weights=each_seed(f"{RESULTS}/models/{{method}}/seed{{seed}}.safetensors"),
        recipe=each_seed(f"{RESULTS}/models/{{method}}/seed{{seed}}.json"),
    log:
        f"{LOGS}/train/{{method}}/{SEED_JOB}.log",
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=grows(16000),
        runtime=grows(1440),
        gpu=GPUS["train"],
    params:
        usage=benchmark_of("train", f"{{method}}/{SEED_JOB}"),
        manifests=lambda wildcards, input: cli_options(
            {"manifest": [input.subset, *input.added]}
        ),
        seeds=lambda wildcards, output: cli_options(
            {"seed": job_seeds(wildcards), "out": output.weights}
        ),
        # More than one process: DDP over the node's GPUs, launched by torchrun.
        launcher=STUDY.train_launcher(),
        options=cli_options(STUDY.train_options()),
    shell:
        "python -m augbench.usage --record {params.usage} --"
        " {params.launcher} -m augbench.train {params.manifests} --classes {input.classes}"
        " {params.seeds} {params.options}"
        " --threads {threads} > {log} 2>&1"
