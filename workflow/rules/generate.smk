rule generate:
    input:
        model=diffusion_inputs,
        classes=config["dataset"]["classes"],
        subset=rules.subset.output.subset,
    output:
        manifest=f"{RESULTS}/added/{{method}}/manifest.csv",
    wildcard_constraints:
        method=alternation(methods_of("generate")),
    params:
        out_dir=lambda wildcards, output: Path(output.manifest).parent,
        method=lambda wildcards: METHODS[wildcards.method],
        per_class=optional("--per-class", config["augment"]["per_class"]),
        revision=optional("--revision", config["diffusion"]["revision"]),
        image_size=optional("--image-size", config["diffusion"]["image_size"]),
        template=optional("--template", config["prompt_template"]),
    log:
        f"{LOGS}/generate/{{method}}.log",
    benchmark:
        f"{BENCHMARKS}/generate/{{method}}.tsv"
    threads: 2
    resources:
        mem_mb=16000,
        runtime=720,
        gpu=1,
    conda:
        ENV
    shell:
        "python -m augbench.generate --model {config[diffusion][model]} {params.revision}"
        " --classes {input.classes} --subset {input.subset} --out-dir {params.out_dir}"
        " {params.template} {params.per_class} {params.image_size}"
        " --scheduler {params.method[scheduler]} --steps {params.method[steps]}"
        " --guidance-scale {params.method[guidance_scale]} --seed {params.method[seed]}"
        " --batch-size {config[diffusion][batch_size]} --dtype {config[diffusion][dtype]}"
        " --device {config[device]} --threads {threads} > {log} 2>&1"
