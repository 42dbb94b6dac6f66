rule embed_pool:
    input:
        manifest=config["pool"]["manifest"],
        model=clip_inputs,
    output:
        f"{RESULTS}/embed/pool_images.npy",
    params:
        pretrained=optional("--pretrained", config["clip"]["pretrained"]),
    log:
        f"{LOGS}/embed/pool_images.log",
    benchmark:
        f"{BENCHMARKS}/embed/pool_images.tsv"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=120,
        gpu=1,
    conda:
        ENV
    shell:
        "python -m augbench.embed images --manifest {input.manifest} --out {output}"
        " --model {config[clip][model]} {params.pretrained}"
        " --batch-size {config[clip][batch_size]} --num-workers {config[clip][num_workers]}"
        " --device {config[device]} --threads {threads} > {log} 2>&1"


rule embed_prompts:
    input:
        classes=config["dataset"]["classes"],
        model=clip_inputs,
    output:
        f"{RESULTS}/embed/class_prompts.npy",
    params:
        pretrained=optional("--pretrained", config["clip"]["pretrained"]),
        template=optional("--template", config["prompt_template"]),
    log:
        f"{LOGS}/embed/class_prompts.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    conda:
        ENV
    shell:
        "python -m augbench.embed prompts --classes {input.classes} {params.template}"
        " --out {output} --model {config[clip][model]} {params.pretrained}"
        " --device {config[device]} --threads {threads} > {log} 2>&1"
