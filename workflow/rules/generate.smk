rule generate:
    input:
        model=diffusion_inputs,
        classes=config["dataset"]["classes"],
        subset=rules.subset.output.subset,
    output:
        manifest=f"{RESULTS}/added/{{method}}/manifest.csv",
    log:
        f"{LOGS}/generate/{{method}}.log",
    benchmark:
        f"{BENCHMARKS}/generate/{{method}}.tsv"
    wildcard_constraints:
        method=alternation(methods_of("generate")),
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=16000,
        runtime=720,
        gpu=1,
    params:
        out_dir=lambda wildcards, output: Path(output.manifest).parent,
        options=lambda wildcards: cli_options(
            {
                **config["diffusion"],
                "template": config["prompt_template"],
                "per_class": config["augment"]["per_class"],
                "device": config["device"],
                **{
                    key: value
                    for key, value in METHODS[wildcards.method].items()
                    if key
                    in ("prompt", "scheduler", "steps", "guidance_scale", "seed")
                },
            }
        ),
    shell:
        "python -m augbench.generate --classes {input.classes} --subset {input.subset}"
        " --out-dir {params.out_dir} {params.options} --threads {threads} > {log} 2>&1"
