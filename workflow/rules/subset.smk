rule subset:
    input:
        train=config["dataset"]["train"],
        classes=config["dataset"]["classes"],
    output:
        subset=f"{RESULTS}/subset/train.csv",
        rest=f"{RESULTS}/subset/rest.csv",
    params:
        size=optional("--per-class", config["subset"]["per_class"])
        or optional("--fraction", config["subset"]["fraction"]),
    log:
        f"{LOGS}/subset.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        ENV
    shell:
        "python -m augbench.subset --manifest {input.train} --classes {input.classes}"
        " {params.size} --seed {config[subset][seed]}"
        " --out {output.subset} --rest {output.rest} > {log} 2>&1"
