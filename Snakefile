# augbench: does augmenting a small labelled dataset with diffusion-generated images
# help, and does retrieving real images from the diffusion model's own pre-training
# data help more? The DAG: subset -> embed -> retrieve | (personalise ->) generate ->
# train -> evaluate -> aggregate. The mini-world rules build data and foundation models offline.
from snakemake.utils import min_version

min_version("9.0")


# A preset given with --configfile stands alone rather than merging into config.yaml
# (Snakemake would otherwise inherit, say, the mini-world's methods into a preset).
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/miniworld.smk"
include: "workflow/rules/subset.smk"
include: "workflow/rules/pool.smk"
include: "workflow/rules/embed.smk"
include: "workflow/rules/retrieve.smk"
include: "workflow/rules/personalise.smk"
include: "workflow/rules/generate.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/diagnostics.smk"


rule all:
    default_target: True
    input:
        rules.aggregate.output,
        rules.figures.output,


onsuccess:
    print_summary()
