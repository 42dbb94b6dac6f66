rule train:
    input:
        subset=rules.subset.output.subset,
        added=added_images,
        classes=config["dataset"]["classes"],
        init_weights=config["classifier"]["init_weights"] or [],
    output:
        weights=f"{RESULTS}/models/{{method}}/seed{{seed}}.safetensors",
        recipe=f"{RESULTS}/models/{{method}}/seed{{seed}}.json",
    log:
        f"{LOGS}/train/{{method}}/seed{{seed}}.log",
    benchmark:
        benchmark_of("train", "{method}/seed{seed}")
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=grows(16000),
        runtime=grows(1440),
        gpu=GPUS["train"],
    params:
        manifests=lambda wildcards, input: cli_options(
            {"manifest": [input.subset, *input.added]}
        ),
        # More than one process: DDP over the node's GPUs, launched by torchrun.
        launcher=(
            "python"
            if config["classifier"]["processes"] == 1
            else f"torchrun --standalone --nproc_per_node {config['classifier']['processes']}"
        ),
        options=cli_options(
            {
                **{k: v for k, v in config["classifier"].items() if k != "processes"},
                "device": config["device"],
            }
        ),
    shell:
        "{params.launcher} -m augbench.train {params.manifests} --classes {input.classes}"
        " --out {output.weights} --seed {wildcards.seed} {params.options}"
        " --threads {threads} > {log} 2>&1"
