rule generate:
    input:
        unpack(zero_shot_inputs),
        model=diffusion_inputs,
        classes=config["dataset"]["classes"],
        subset=rules.subset.output.subset,
        personalisation=lambda wildcards: personalisation_files(wildcards.method),
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
        mem_mb=grows(16000),
        runtime=grows(720),
        gpu=1,
    params:
        out_dir=lambda wildcards, output: Path(output.manifest).parent,
        options=lambda wildcards, input: cli_options(
            {
                **config["diffusion"],
                "template": config["prompt_template"],
                "per_class": config["augment"]["per_class"],
                "device": config["device"],
                "method": wildcards.method,
                **{key: METHODS[wildcards.method][key] for key in GENERATE_OPTIONS},
                "personalisation": list(input.personalisation) or None,
                **personalisation_checks(wildcards.method),
                "class_embeddings": input.get("class_prompts"),
                "clip_model": (
                    config["clip"]["model"]
                    if "class_prompts" in input.keys()
                    else None
                ),
                "clip_pretrained": (
                    config["clip"]["pretrained"]
                    if "class_prompts" in input.keys()
                    else None
                ),
            }
        ),
    shell:
        "python -m augbench.generate --classes {input.classes} --subset {input.subset}"
        " --out-dir {params.out_dir} {params.options} --threads {threads} > {log} 2>&1"
