# With diagnostics.enabled, the summary and the figures relate each method's gain to the
# diagnostics of its added images (diagnostics.csv, made by the rules of diagnostics.smk).
DIAGNOSED = config["diagnostics"]["enabled"]
DIAGNOSTICS = [f"{RESULTS}/diagnostics.csv"] if DIAGNOSED else []


rule aggregate:
    input:
        metrics=expand(
            f"{RESULTS}/metrics/{{method}}/seed{{seed}}.json",
            method=METHODS,
            seed=SEEDS,
        ),
        added=[
            STUDY.added_manifest(method)
            for method in METHODS
            if STUDY.adds_images(method)
        ],
        unreadable=[
            path for paths in STUDY.unreadable_lists().values() for path in paths
        ],
        quality=STUDY.quality_tables(),
        excluded=[PATHS.pool_excluded] if STUDY.local_retrieval_methods() else [],
        copy_calibrations=[
            STUDY.copy_calibration(check) for check in STUDY.calibrated_checks()
        ],
        download_failures=list(STUDY.download_failure_lists().values()),
        download_excluded=list(STUDY.download_exclusion_lists().values()),
        classes=CLASSES,
        diagnostics=DIAGNOSTICS,
        learned=[path for paths in STUDY.learned_artefacts().values() for path in paths],
    output:
        **(
            {
                "correlation": report(
                    f"{RESULTS}/gain_correlation.csv",
                    caption="../report/gain_correlation.rst",
                    category="1. Results",
                )
            }
            if DIAGNOSED
            else {}
        ),
        csv=report(
            f"{RESULTS}/summary.csv",
            caption="../report/summary.rst",
            category="1. Results",
        ),
        md=f"{RESULTS}/summary.md",
        per_class=report(
            f"{RESULTS}/per_class.csv",
            caption="../report/per_class.rst",
            category="1. Results",
        ),
        cost=report(
            f"{RESULTS}/cost.csv",
            caption="../report/cost.rst",
            category="3. Compute cost",
        ),
        unreadable=report(
            f"{RESULTS}/unreadable.csv",
            caption="../report/unreadable.rst",
            category="4. Provenance and data",
        ),
        excluded=report(
            f"{RESULTS}/excluded.csv",
            caption="../report/excluded.rst",
            category="4. Provenance and data",
        ),
        provenance=report(
            f"{RESULTS}/provenance.json",
            caption="../report/provenance.rst",
            category="4. Provenance and data",
        ),
    log:
        f"{LOGS}/aggregate.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=grows(2000),
        runtime=grows(10),
    params:
        out_dir=lambda wildcards, output: Path(output.csv).parent,
        kinds=[f"{name}={params['kind']}" for name, params in METHODS.items()],
        added=lambda wildcards, input: [
            f"{Path(path).parent.name}={path}" for path in input.added
        ],
        # Every job with a benchmark lies upstream of the metrics and added images, so the
        # experiment's benchmark folder is complete when this job runs.
        options=cli_options(
            {
                "unreadable": [
                    f"{stage}={path}"
                    for stage, paths in STUDY.unreadable_lists().items()
                    for path in paths
                ],
                "excluded": (
                    PATHS.pool_excluded if STUDY.local_retrieval_methods() else None
                ),
                **STUDY.copy_check_report(),
                "download_failures": [
                    f"{method}={path}"
                    for method, path in STUDY.download_failure_lists().items()
                ],
                "download_excluded": [
                    f"{method}={path}"
                    for method, path in STUDY.download_exclusion_lists().items()
                ],
                "experiment_benchmarks": BENCHMARKS,
                "seeds": SEEDS,
                "benchmark_root": PRETRAIN_BENCHMARKS,
                "benchmarks_if_present": STUDY.pretrain_benchmarks() or None,
                "diagnostics": DIAGNOSTICS,
                "learned": [
                    f"{method}={path}"
                    for method, paths in STUDY.learned_artefacts().items()
                    for path in paths
                ],
                "settings": json.dumps(STUDY.provenance(), sort_keys=True),
            }
        ),
        gpus=[f"{rule}={count}" for rule, count in GPUS.items()],
        quality=lambda wildcards, input: cli_options(
            {"quality": [f"{Path(path).parent.name}={path}" for path in input.quality]}
        ),
    shell:
        "python -m augbench.aggregate --metrics {input.metrics}"
        " --method-kinds {params.kinds} --added {params.added}"
        " --gpus {params.gpus} {params.options} {params.quality}"
        " --classes {input.classes} --out-dir {params.out_dir} > {log} 2>&1"


rule figures:
    input:
        summary=rules.aggregate.output.csv,
        subset=rules.subset.output.subset,
        added=rules.aggregate.input.added,
        classes=CLASSES,
        diagnostics=DIAGNOSTICS,
    output:
        **(
            {
                "gain": report(
                    directory(f"{RESULTS}/figures/gain_vs_diagnostics"),
                    patterns=["{name}.png"],
                    caption="../report/gain_vs_diagnostics.rst",
                    category="2. Figures",
                    subcategory="Gain against diagnostics",
                )
            }
            if DIAGNOSED
            else {}
        ),
        top1=report(
            f"{RESULTS}/figures/top1.png",
            caption="../report/top1.rst",
            category="2. Figures",
        ),
        cost=report(
            f"{RESULTS}/figures/top1_vs_cost.png",
            caption="../report/top1_vs_cost.rst",
            category="3. Compute cost",
        ),
        added=report(
            f"{RESULTS}/figures/top1_vs_added.png",
            caption="../report/top1_vs_added.rst",
            category="2. Figures",
        ),
        grids=report(
            directory(f"{RESULTS}/figures/grids"),
            patterns=["{name}.png"],
            caption="../report/grids.rst",
            category="2. Figures",
            subcategory="Image grids",
        ),
    log:
        f"{LOGS}/figures.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=grows(4000),
        runtime=grows(20),
    params:
        out_dir=lambda wildcards, output: Path(output.top1).parent,
        added=lambda wildcards, input: [
            f"{Path(path).parent.name}={path}" for path in input.added
        ],
        options=cli_options({**config["report"], "diagnostics": DIAGNOSTICS}),
    shell:
        "python -m augbench.figures --summary {input.summary} --subset {input.subset}"
        " --classes {input.classes} --added {params.added} {params.options}"
        " --out-dir {params.out_dir} > {log} 2>&1"
