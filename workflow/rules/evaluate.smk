rule evaluate:
    input:
        weights=rules.train.output.weights,
        recipe=rules.train.output.recipe,
        val=config["dataset"]["val"],
        classes=config["dataset"]["classes"],
    output:
        f"{RESULTS}/metrics/{{method}}/seed{{seed}}.json",
    log:
        f"{LOGS}/evaluate/{{method}}/seed{{seed}}.log",
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
    conda:
        ENV
    shell:
        "python -m augbench.evaluate --model {input.weights} --manifest {input.val}"
        " --classes {input.classes} --out {output} --num-workers 0"
        " --device {config[device]} --threads {threads} > {log} 2>&1"
