# The mini-world's stand-ins for ImageNet, LAION and the pre-trained models: digits
# data, a captioned pool, and a tiny CLIP and diffusion pipeline trained on that pool.
if MINIWORLD["enabled"]:

    rule miniworld_data:
        output:
            classes=config["dataset"]["classes"],
            train=config["dataset"]["train"],
            val=config["dataset"]["val"],
            pool=config["pool"]["manifest"],
        params:
            root=MINIWORLD["root"],
        log:
            f"{LOGS}/miniworld/data.log",
        threads: 1
        resources:
            mem_mb=2000,
            runtime=10,
        conda:
            ENV
        shell:
            "python -m augbench.miniworld --out {params.root}"
            " --image-size {MINIWORLD[image_size]}"
            " --n-val-per-class {MINIWORLD[n_val_per_class]}"
            " --n-train-per-class {MINIWORLD[n_train_per_class]}"
            " --pool-copies {MINIWORLD[pool_copies]}"
            " --wrong-caption-rate {MINIWORLD[wrong_caption_rate]}"
            " --distractor-rate {MINIWORLD[distractor_rate]}"
            " --seed {MINIWORLD[seed]} > {log} 2>&1"

    rule pretrain_clip:
        input:
            pool=rules.miniworld_data.output.pool,
        output:
            directory(local_model(config["clip"]["model"])),
        params:
            hp=MINIWORLD["clip"],
        log:
            f"{LOGS}/miniworld/pretrain_clip.log",
        benchmark:
            f"{BENCHMARKS}/miniworld/pretrain_clip.tsv"
        threads: 2
        resources:
            mem_mb=4000,
            runtime=60,
            gpu=1,
        conda:
            ENV
        shell:
            "python -m augbench.pretrain_clip --pool {input.pool} --out {output}"
            " --image-size {MINIWORLD[image_size]} --steps {params.hp[steps]}"
            " --batch-size {params.hp[batch_size]} --width {params.hp[width]}"
            " --layers {params.hp[layers]} --embed-dim {params.hp[embed_dim]}"
            " --lr {params.hp[lr]} --seed {MINIWORLD[seed]} --threads {threads} > {log} 2>&1"

    rule pretrain_diffusion:
        input:
            pool=rules.miniworld_data.output.pool,
        output:
            directory(local_model(config["diffusion"]["model"])),
        params:
            hp=MINIWORLD["diffusion"],
        log:
            f"{LOGS}/miniworld/pretrain_diffusion.log",
        benchmark:
            f"{BENCHMARKS}/miniworld/pretrain_diffusion.tsv"
        threads: 2
        resources:
            mem_mb=4000,
            runtime=60,
            gpu=1,
        conda:
            ENV
        shell:
            "python -m augbench.pretrain_diffusion --pool {input.pool} --out {output}"
            " --image-size {MINIWORLD[image_size]} --vae-steps {params.hp[vae_steps]}"
            " --unet-steps {params.hp[unet_steps]} --batch-size {params.hp[batch_size]}"
            " --vae-lr {params.hp[lr]} --unet-lr {params.hp[lr]}"
            " --caption-dropout {params.hp[caption_dropout]}"
            " --seed {MINIWORLD[seed]} --threads {threads} > {log} 2>&1"
