rule list_dataset:
    input:
        root=lambda wildcards: STUDY.dataset_root(wildcards.split),
        classes=CLASSES,
    output:
        f"{RESULTS}/data/{{split}}.csv",
    log:
        f"{LOGS}/data/{{split}}.log",
    wildcard_constraints:
        split=alternation(STUDY.listed_splits),
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=grows(4000),
        runtime=grows(30),
    params:
        # A torchvision dataset: its class and official split(s); a tree needs none.
        options=lambda wildcards: cli_options(STUDY.listing_options(wildcards.split)),
    shell:
        "python -m augbench.dataset --root {input.root} --classes {input.classes}"
        " {params.options} --out {output} > {log} 2>&1"


if config["dataset"]["split"] is not None:

    rule split_dataset:
        input:
            dataset=STUDY.listed_manifest("train"),
            classes=CLASSES,
        output:
            train=STUDY.dataset_manifest("train"),
            val=STUDY.dataset_manifest("val"),
        log:
            f"{LOGS}/data/split.log",
        conda:
            ENV
        threads: 1
        resources:
            mem_mb=grows(4000),
            runtime=grows(10),
        params:
            options=cli_options(config["dataset"]["split"]),
        shell:
            "python -m augbench.split --manifest {input.dataset} --classes {input.classes}"
            " --train {output.train} --val {output.val} {params.options} > {log} 2>&1"


rule screen_val:
    input:
        STUDY.dataset_manifest("val"),
    output:
        readable=PATHS.val_manifest,
        unreadable=PATHS.val_unreadable,
    log:
        f"{LOGS}/data/val_screen.log",
    conda:
        ENV
    threads: 8
    resources:
        mem_mb=grows(4000),
        runtime=grows(60),
    shell:
        "python -m augbench.screen --manifest {input} --out {output.readable}"
        " --unreadable {output.unreadable} --threads {threads} > {log} 2>&1"


rule subset:
    input:
        train=PATHS.train_manifest,
        classes=CLASSES,
        file_list=config["subset"]["file_list"] or [],
    output:
        subset=PATHS.subset,
        rest=PATHS.subset_rest,
        unreadable=PATHS.subset_unreadable,
    log:
        f"{LOGS}/subset.log",
    conda:
        ENV
    threads: 8
    resources:
        mem_mb=grows(4000),
        runtime=grows(60),
    params:
        options=cli_options(config["subset"]),
    shell:
        "python -m augbench.subset --manifest {input.train} --classes {input.classes}"
        " --out {output.subset} --rest {output.rest} --unreadable {output.unreadable}"
        " {params.options} --threads {threads} > {log} 2>&1"


rule add_real:
    input:
        rest=rules.subset.output.rest,
        subset=rules.subset.output.subset,
        classes=CLASSES,
    output:
        manifest=STUDY.added_manifest("{method}"),
        unreadable=f"{RESULTS}/added/{{method}}/unreadable.csv",
    log:
        f"{LOGS}/add_real/{{method}}.log",
    wildcard_constraints:
        method=alternation(methods_of("real")),
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=grows(2000),
        runtime=grows(10),
    params:
        options=lambda wildcards: cli_options(
            {
                "times": METHODS[wildcards.method]["real_multiplier"] - 1,
                "seed": config["subset"]["seed"],
            }
        ),
    shell:
        "python -m augbench.subset --manifest {input.rest} --classes {input.classes}"
        " --like {input.subset} --out {output.manifest} --unreadable {output.unreadable}"
        " {params.options} --threads {threads} > {log} 2>&1"
