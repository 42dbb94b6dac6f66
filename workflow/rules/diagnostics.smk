# Diagnostics of each method's added images in CLIP space (augbench.diagnostics): label
# agreement, CLIP score, Fréchet distances, precision/recall/density/coverage, Vendi score.
# No benchmarks: these jobs measure the methods, they are not part of a method's cost.


rule embed_added:
    input:
        manifest=STUDY.added_manifest("{method}"),
        model=clip_inputs,
    output:
        f"{RESULTS}/embed/added/{{method}}.npy",
    log:
        f"{LOGS}/embed/added/{{method}}.log",
    wildcard_constraints:
        method=alternation(STUDY.methods_adding_images()),
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=grows(8000),
        runtime=grows(60),
        gpu=GPUS["embed_added"],
    params:
        options=cli_options({**config["clip"], "device": config["device"]}),
    shell:
        "python -m augbench.embed images --manifest {input.manifest} --out {output}"
        " {params.options} --threads {threads} > {log} 2>&1"


rule diagnose_added:
    input:
        added=STUDY.added_manifest("{method}"),
        added_embeddings=rules.embed_added.output[0],
        subset=rules.subset.output.subset,
        subset_embeddings=PATHS.subset_embeddings,
        val=PATHS.val_manifest,
        val_embeddings=PATHS.val_embeddings,
        class_prompts=PATHS.class_prompts,
        # The pool a method retrieved from: where it knows true classes, label_precision.
        pool=lambda wildcards: (
            [STUDY.pool_input()["path"]]
            if wildcards.method in STUDY.local_retrieval_methods()
            else []
        ),
    output:
        f"{RESULTS}/diagnostics/{{method}}.csv",
    log:
        f"{LOGS}/diagnostics/{{method}}.log",
    wildcard_constraints:
        method=alternation(STUDY.methods_adding_images()),
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=grows(8000),
        runtime=grows(60),
    params:
        pool=lambda wildcards, input: cli_options({"pool": list(input.pool)}),
        options=cli_options(
            {
                key: value
                for key, value in config["diagnostics"].items()
                if key != "enabled"
            }
        ),
    shell:
        "python -m augbench.diagnostics method --method {wildcards.method}"
        " --added {input.added} --added-embeddings {input.added_embeddings}"
        " --subset {input.subset} --subset-embeddings {input.subset_embeddings}"
        " --val {input.val} --val-embeddings {input.val_embeddings}"
        " --class-prompts {input.class_prompts} {params.pool} --out {output}"
        " {params.options} > {log} 2>&1"


rule diagnostics:
    input:
        [
            f"{RESULTS}/diagnostics/{method}.csv"
            for method in STUDY.methods_adding_images()
        ],
    output:
        report(
            f"{RESULTS}/diagnostics.csv",
            caption="../report/diagnostics.rst",
            category="1. Results",
        ),
    log:
        f"{LOGS}/diagnostics/join.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=grows(2000),
        runtime=grows(10),
    params:
        parts=lambda wildcards, input: cli_options({"part": list(input)}),
    shell:
        "python -m augbench.diagnostics join {params.parts} --out {output} > {log} 2>&1"
