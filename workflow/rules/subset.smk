rule subset:
    input:
        train=config["dataset"]["train"],
        classes=config["dataset"]["classes"],
    output:
        subset=f"{RESULTS}/subset/train.csv",
        rest=f"{RESULTS}/subset/rest.csv",
    log:
        f"{LOGS}/subset.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=grows(2000),
        runtime=grows(10),
    params:
        options=cli_options(config["subset"]),
    shell:
        "python -m augbench.subset --manifest {input.train} --classes {input.classes}"
        " --out {output.subset} --rest {output.rest} {params.options} > {log} 2>&1"


rule add_real:
    input:
        rest=rules.subset.output.rest,
        subset=rules.subset.output.subset,
        classes=config["dataset"]["classes"],
    output:
        manifest=f"{RESULTS}/added/{{method}}/manifest.csv",
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
        " --like {input.subset} --out {output.manifest} {params.options} > {log} 2>&1"
