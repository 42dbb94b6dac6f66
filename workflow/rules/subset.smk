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
        mem_mb=2000,
        runtime=10,
    params:
        options=cli_options(config["subset"]),
    shell:
        "python -m augbench.subset --manifest {input.train} --classes {input.classes}"
        " --out {output.subset} --rest {output.rest} {params.options} > {log} 2>&1"
