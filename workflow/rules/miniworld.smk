# The mini-world's stand-ins for ImageNet, LAION and the pre-trained models: digits
# data, a captioned pool, and a tiny CLIP and diffusion pipeline trained on that pool.
# With miniworld.pretrain false, the pre-training rules are left out and the models are
# plain inputs: config.yaml uses the ones that ship in resources/miniworld/models,
# which these rules made. The pre-training rules train on pool.manifest, the
# mini-world's or any other captioned pool (miniworld.enabled false: a world of your own).
if MINIWORLD["enabled"]:

    rule miniworld_data:
        output:
            classes=config["dataset"]["classes"],
            train=config["dataset"]["train"],
            val=config["dataset"]["val"],
            # The mini-world writes its pool here; pool.manifest may name shards made from it.
            pool=f"{Path(config['dataset']['classes']).parent}/pool/manifest.csv",
            # A shifted evaluation set: the validation digits with the pool's perturbations.
            val_web=f"{Path(config['dataset']['classes']).parent}/val_web/manifest.csv",
        log:
            f"{LOGS}/miniworld/data.log",
        conda:
            ENV
        threads: 1
        resources:
            mem_mb=grows(2000),
            runtime=grows(10),
        params:
            out=lambda wildcards, output: Path(output.classes).parent,
            options=cli_options(
                {
                    key: MINIWORLD[key]
                    for key in (
                        "image_size",
                        "n_val_per_class",
                        "n_train_per_class",
                        "pool_copies",
                        "wrong_caption_rate",
                        "distractor_rate",
                        "seed",
                    )
                }
            ),
        shell:
            "python -m augbench.miniworld.data --out {params.out} {params.options} > {log} 2>&1"


if MINIWORLD["pretrain"]:

    rule pretrain_clip:
        input:
            pool=PATHS.pool_images,
        output:
            directory(STUDY.local_model(config["clip"]["model"])),
        log:
            f"{LOGS}/miniworld/pretrain_clip.log",
        conda:
            ENV
        threads: 2
        resources:
            mem_mb=grows(4000),
            runtime=grows(60),
            gpu=GPUS["pretrain_clip"],
        params:
            usage=STUDY.pretrain_benchmark("pretrain_clip", "clip"),
            options=cli_options(
                {
                    "image_size": MINIWORLD["image_size"],
                    "seed": MINIWORLD["seed"],
                    **MINIWORLD["clip"],
                }
            ),
        shell:
            "python -m augbench.usage --record {params.usage} --"
            " python -m augbench.miniworld.pretrain_clip --pool {input.pool} --out {output}"
            " {params.options} --threads {threads} > {log} 2>&1"

    rule pretrain_diffusion:
        input:
            pool=PATHS.pool_images,
            clip=rules.pretrain_clip.output[0],
        output:
            directory(STUDY.local_model(config["diffusion"]["model"])),
        log:
            f"{LOGS}/miniworld/pretrain_diffusion.log",
        conda:
            ENV
        threads: 2
        resources:
            mem_mb=grows(4000),
            runtime=grows(60),
            gpu=GPUS["pretrain_diffusion"],
        params:
            usage=STUDY.pretrain_benchmark("pretrain_diffusion", "diffusion"),
            options=cli_options(
                {
                    "image_size": MINIWORLD["image_size"],
                    "seed": MINIWORLD["seed"],
                    **MINIWORLD["diffusion"],
                }
            ),
        shell:
            "python -m augbench.usage --record {params.usage} --"
            " python -m augbench.miniworld.pretrain_diffusion --pool {input.pool} --clip {input.clip}"
            " --out {output}"
            " {params.options} --threads {threads} > {log} 2>&1"
