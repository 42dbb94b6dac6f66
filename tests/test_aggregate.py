import json

import numpy as np
import pandas as pd
import pytest

from augbench import aggregate, gain_correlation


def _metrics(tmp_path, method, seed, top1, per_class=None, top5=None, ece=None, **further):
    """A per-seed metrics file; without ``ece``, one written before evaluate measured calibration;
    ``further`` adds metrics of evaluation sets (``top1_<name>``, ``ece_<name>``)."""
    path = tmp_path / "metrics" / method / f"seed{seed}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    metrics = {"top1": top1, "top5": top5 or top1, "per_class_top1": per_class or {}, **further}
    path.write_text(json.dumps(metrics | ({} if ece is None else {"ece": ece})))
    return str(path)


def test_summary_has_mean_std_and_counts(tmp_path):
    paths = [
        _metrics(tmp_path, "baseline", 0, 80.0, ece=5.0),
        _metrics(tmp_path, "baseline", 1, 82.0, ece=7.0),
        _metrics(tmp_path, "retrieve_text", 0, 90.0, ece=3.0),
    ]
    table = aggregate.summarise(paths, {"baseline": "real", "retrieve_text": "retrieve"}, {"retrieve_text": 10.0})
    rows = table.set_index("method")
    assert rows.loc["baseline", "top1_mean"] == pytest.approx(81.0)
    assert rows.loc["baseline", "top1_std"] == pytest.approx(1.41421356)
    assert rows.loc["baseline", "n_seeds"] == 2
    assert np.isnan(rows.loc["retrieve_text", "top1_std"])  # one seed: its spread is not known, not 0
    assert rows.loc["baseline", "ece_mean"] == pytest.approx(6.0)
    assert rows.loc["baseline", "ece_std"] == pytest.approx(1.41421356)
    assert rows.loc["retrieve_text", "ece_mean"] == 3.0 and np.isnan(rows.loc["retrieve_text", "ece_std"])
    assert rows.loc["retrieve_text", "n_added_per_class"] == 10.0
    assert rows.loc["baseline", "n_added_per_class"] == 0.0
    # Paired by seed: only seed 0 is shared, so the difference has no interval.
    assert rows.loc["retrieve_text", "vs_baseline"] == pytest.approx(10.0)
    assert np.isnan(rows.loc["retrieve_text", "vs_baseline_ci_low"])
    markdown = aggregate.to_markdown(table)
    assert "| baseline | real | 2 | 81.00 ± 1.41 |  | -10.00 [n/a] | 6.00 ± 1.41 | 0 |" in markdown  # seed 0: 80 - 90
    assert "| retrieve_text | retrieve | 1 | 90.00 ± n/a | +10.00 [n/a] |  | 3.00 ± n/a | 10 |" in markdown
    assert markdown.startswith(
        "| method | kind | seeds | top-1 % (mean ± std) | Δ baseline [95% CI] "
        "| Δ best retrieval (retrieve_text) [95% CI] | ECE % (mean ± std) | added per class |\n"
    )
    assert "Δ best retrieval (retrieve_text) [95% CI]" in markdown


def test_one_seed_shows_no_spread_in_the_table_or_the_csv(tmp_path):
    paths = [_metrics(tmp_path, m, 0, v, top5=v + 20) for m, v in (("baseline", 70.0), ("retr", 72.0), ("gen", 71.0))]
    (tmp_path / "classes.txt").write_text("".join(f"c{i}\n" for i in range(11)))  # top-5 too
    aggregate.main(
        ["--metrics", *paths, "--method-kinds", "baseline=real", "retr=retrieve", "gen=generate"]
        + ["--classes", str(tmp_path / "classes.txt"), "--out-dir", str(tmp_path)]
    )
    summary = (tmp_path / "summary.md").read_text()
    assert "±" in summary and "± 0.00" not in summary
    assert "| gen | generate | 1 | 71.00 ± n/a | +1.00 [n/a] | -1.00 [n/a] | 91.00 ± n/a |" in summary
    table = pd.read_csv(tmp_path / "summary.csv")
    assert table.top1_std.isna().all() and table.top5_std.isna().all()
    assert table.top1_mean.tolist() == [70.0, 72.0, 71.0]


def test_metrics_from_before_calibration_was_measured_still_aggregate(tmp_path):
    # baseline's metrics predate ECE; gen has it on one seed of two, so no mean over the same seeds as top-1.
    paths = [_metrics(tmp_path, "baseline", s, 70.0 + s) for s in (0, 1)]
    paths += [_metrics(tmp_path, "gen", 0, 72.0, ece=4.0), _metrics(tmp_path, "gen", 1, 73.0)]
    paths += [_metrics(tmp_path, "retr", s, 74.0, ece=2.0 + s) for s in (0, 1)]
    (tmp_path / "classes.txt").write_text("a\nb\n")
    aggregate.main(
        ["--metrics", *paths, "--method-kinds", "baseline=real", "retr=retrieve", "gen=generate"]
        + ["--classes", str(tmp_path / "classes.txt"), "--out-dir", str(tmp_path)]
    )
    table = pd.read_csv(tmp_path / "summary.csv").set_index("method")
    assert table.loc[["baseline", "gen"], ["ece_mean", "ece_std"]].isna().all().all()
    assert table.loc["retr", "ece_mean"] == pytest.approx(2.5)
    assert table.loc["retr", "ece_std"] == pytest.approx(0.7071, abs=1e-4)
    assert table.loc["gen", "top1_mean"] == pytest.approx(72.5)  # the rest of the row is unaffected
    lines = (tmp_path / "summary.md").read_text().splitlines()
    column = [cell.strip() for cell in lines[0].split("|")].index("ECE % (mean ± std)")
    ece = {line.split("|")[1].strip(): line.split("|")[column].strip() for line in lines[2:5]}
    assert ece == {"baseline": "n/a", "retr": "2.50 ± 0.71", "gen": "n/a"}


def test_differences_are_paired_by_seed_with_a_t_interval(tmp_path):
    # The method is 2 points ahead on every seed though both vary a lot over seeds:
    # pairing removes the seed-to-seed spread.
    base = {0: 70.0, 1: 80.0, 2: 75.0}
    gain = {0: 2.5, 1: 1.5, 2: 2.0}
    paths = [_metrics(tmp_path, "baseline", s, v) for s, v in base.items()]
    paths += [_metrics(tmp_path, "gen", s, base[s] + gain[s]) for s in base]
    paths += [_metrics(tmp_path, "retr", s, base[s] + 4.0) for s in base]
    table = aggregate.summarise(paths, {"baseline": "real", "retr": "retrieve", "gen": "generate"}, {})
    row = table.set_index("method").loc["gen"]
    # mean 2.0, sample std 0.5, t(0.975, 2) = 4.303: half-width 4.303 * 0.5 / sqrt(3) = 1.242
    assert row.vs_baseline == pytest.approx(2.0)
    assert (row.vs_baseline_ci_low, row.vs_baseline_ci_high) == pytest.approx((0.758, 3.242), abs=1e-3)
    assert row.vs_best_retrieval == pytest.approx(-2.0)
    assert table.attrs["best_retrieval"] == "retr"
    assert table.method.tolist() == ["baseline", "retr", "gen"]  # the registry's order


def test_each_evaluation_set_gets_its_mean_std_and_paired_difference(tmp_path):
    # On "web", retr beats the baseline by 4, 6 and 5 points on seeds 0-2: mean 5, t-interval 5 ± 2.48.
    paths = [_metrics(tmp_path, "baseline", s, 80.0, ece=1.0, top1_web=50.0 + s, ece_web=9.0) for s in range(3)]
    paths += [
        _metrics(tmp_path, "retr", s, 81.0, ece=1.0, top1_web=50.0 + s + (4, 6, 5)[s], ece_web=8.0 + s)
        for s in range(3)
    ]
    (tmp_path / "classes.txt").write_text("a\nb\n")
    aggregate.main(
        ["--metrics", *paths, "--method-kinds", "baseline=real", "retr=retrieve"]
        + ["--classes", str(tmp_path / "classes.txt"), "--out-dir", str(tmp_path)]
    )
    table = pd.read_csv(tmp_path / "summary.csv").set_index("method")
    assert table.loc["baseline", "top1_web_mean"] == pytest.approx(51.0)
    assert table.loc["baseline", "top1_web_std"] == pytest.approx(1.0)
    assert table.loc["retr", "top1_web_mean"] == pytest.approx(56.0)
    assert table.loc["retr", "ece_web_mean"] == pytest.approx(9.0)
    assert table.loc["retr", "top1_web_vs_baseline"] == pytest.approx(5.0)
    half = 4.302653 * 1.0 / np.sqrt(3)  # t(0.975, 2) * std of (4, 6, 5) / sqrt(3)
    assert table.loc["retr", "top1_web_vs_baseline_ci_low"] == pytest.approx(5.0 - half, abs=1e-3)
    assert table.loc["retr", "top1_web_vs_baseline_ci_high"] == pytest.approx(5.0 + half, abs=1e-3)
    assert np.isnan(table.loc["baseline", "top1_web_vs_baseline"])
    assert table.loc["retr", "top1_mean"] == pytest.approx(81.0)  # top-1 on dataset.val is untouched
    summary = (tmp_path / "summary.md").read_text()
    assert "| method | web: top-1 % (mean ± std) | web: Δ baseline [95% CI] | web: ECE % |" in summary
    assert "| retr | 56.00 ± 1.73 | +5.00 [+2.52, +7.48] | 9.00 ± 1.00 |" in summary  # 54, 57, 57


def test_no_evaluation_set_no_columns_and_no_table(tmp_path):
    paths = [_metrics(tmp_path, "baseline", 0, 80.0), _metrics(tmp_path, "retr", 0, 81.0)]
    table = aggregate.summarise(paths, {"baseline": "real", "retr": "retrieve"}, {})
    assert [column for column in table if column.startswith(("top1_", "ece_"))] == [
        "top1_mean",
        "top1_std",
        "ece_mean",
        "ece_std",
    ]
    assert aggregate.evaluation_sets_markdown(table) == ""


def test_top5_is_reported_beyond_10_classes_only(tmp_path):
    paths = [_metrics(tmp_path, "baseline", 0, 50.0, top5=80.0)]
    assert "top5_mean" not in aggregate.summarise(paths, {"baseline": "real"}, {}, n_classes=10)
    table = aggregate.summarise(paths, {"baseline": "real"}, {}, n_classes=11)
    assert table.top5_mean.tolist() == [80.0]
    assert "top-5 %" in aggregate.to_markdown(table)


def test_cli_writes_csv_and_markdown(tmp_path, capsys):
    paths = [_metrics(tmp_path, "baseline", 0, 70.0), _metrics(tmp_path, "gen_classname", 0, 72.5)]
    classes = tmp_path / "classes.txt"
    classes.write_text("a\nb\n")
    added = tmp_path / "added.csv"
    pd.DataFrame({"path": list("abcd"), "label": [0, 0, 1, 1]}).to_csv(added, index=False)
    aggregate.main(
        [
            "--metrics",
            *paths,
            "--method-kinds",
            "baseline=real",
            "gen_classname=generate",
            "--added",
            f"gen_classname={added}",
            "--classes",
            str(classes),
            "--out-dir",
            str(tmp_path),
        ]
    )
    table = pd.read_csv(tmp_path / "summary.csv")
    assert table.method.tolist() == ["baseline", "gen_classname"]
    assert table.n_added_per_class.tolist() == [0.0, 2.0]
    assert "gen_classname" in (tmp_path / "summary.md").read_text()
    assert "gen_classname" in capsys.readouterr().out


def test_skipped_images_are_counted_per_stage_and_listed(tmp_path):
    metrics = _metrics(tmp_path, "baseline", 0, 70.0)
    (tmp_path / "classes.txt").write_text("a\nb\n")
    lists = {
        "subset draw": pd.DataFrame({"path": ["x.jpg"], "label": [0], "reason": ["image x.jpg cannot be read"]}),
        "pool": pd.DataFrame({"path": ["p1.jpg", "p2.jpg"], "label": [-1, -1], "reason": ["r1", "r2"]}),
        "validation": pd.DataFrame(columns=["path", "label", "reason"]),
    }
    args = []
    for stage, frame in lists.items():
        frame.to_csv(tmp_path / f"{stage}.csv", index=False)
        args += ["--unreadable", f"{stage}={tmp_path / f'{stage}.csv'}"]
    aggregate.main(
        ["--metrics", metrics, "--method-kinds", "baseline=real", "--classes", str(tmp_path / "classes.txt")]
        + args
        + ["--out-dir", str(tmp_path)]
    )
    summary = (tmp_path / "summary.md").read_text()
    assert "3 unreadable image(s) were skipped" in summary
    assert "| subset draw | 1 |" in summary and "| pool | 2 |" in summary and "| validation | 0 |" in summary
    listed = pd.read_csv(tmp_path / "unreadable.csv")
    assert listed.stage.tolist() == ["subset draw", "pool", "pool"]
    assert listed.reason.tolist()[0] == "image x.jpg cannot be read"


def test_pool_images_left_out_of_retrieval_are_counted_per_reason_and_listed(tmp_path):
    metrics = _metrics(tmp_path, "baseline", 0, 70.0)
    (tmp_path / "classes.txt").write_text("a\nb\n")
    excluded = pd.DataFrame(
        {
            "pool_row": [3, 3, 8],
            "path": ["p3.jpg", "p3.jpg", "p8.jpg"],
            "reason": ["evaluation duplicate", "safety tag", "evaluation duplicate"],
            "similarity": [0.97, np.nan, 1.0],
            "matched": ["val/1.jpg", "NSFW=NSFW", "val/2.jpg"],
        }
    )
    excluded.to_csv(tmp_path / "pool_excluded.csv", index=False)
    common = ["--metrics", metrics, "--method-kinds", "baseline=real", "--classes", str(tmp_path / "classes.txt")]
    aggregate.main(common + ["--excluded", str(tmp_path / "pool_excluded.csv"), "--out-dir", str(tmp_path)])
    summary = (tmp_path / "summary.md").read_text()
    assert "2 pool image(s) were left out of retrieval" in summary
    for reason, count in (("evaluation duplicate", 2), ("training duplicate", 0), ("safety tag", 1)):
        assert f"| {reason} | {count} |" in summary
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "excluded.csv"), excluded)
    # A run without retrieval has nothing to leave out, and says nothing of it.
    aggregate.main(common + ["--out-dir", str(tmp_path / "plain")])
    assert "left out of retrieval" not in (tmp_path / "plain" / "summary.md").read_text()
    assert pd.read_csv(tmp_path / "plain" / "excluded.csv").empty


def test_summary_gives_each_copy_checks_threshold_and_a_calibrated_ones_catch_and_false_positives(tmp_path):
    metrics = _metrics(tmp_path, "baseline", 0, 70.0)
    (tmp_path / "classes.txt").write_text("a\nb\n")
    calibration = {
        "threshold": 0.912345,
        "target_catch_share": 0.99,
        "catch_share": 0.9913,
        "catch_by_transform": {"jpeg": 1.0, "shrunk": 0.97},
        "copies": 800,
        "false_positive_rate": 0.0004,
        "pairs": 124750,
        "false_positive_images": 0.015,
        "images_probed": 200,
    }
    (tmp_path / "eval_threshold.json").write_text(json.dumps(calibration))
    common = ["--metrics", metrics, "--method-kinds", "baseline=real", "--classes", str(tmp_path / "classes.txt")]
    checks = ["--copy-calibration", f"eval={tmp_path / 'eval_threshold.json'}", "--copy-threshold", "train=0.92"]
    aggregate.main(common + checks + ["--out-dir", str(tmp_path)])
    summary = (tmp_path / "summary.md").read_text()
    assert (
        "| evaluation duplicate | 0.9123 | auto: catches 99% of planted copies "
        "| 99.1% of 800 (jpeg 100%, shrunk 97%) | 0.04% of 124,750 | 1.5% of 200 |"
    ) in summary
    assert "| training duplicate | 0.92 | contamination.train_threshold | n/a | n/a | n/a |" in summary
    aggregate.main(common + ["--copy-threshold", "eval=off", "--out-dir", str(tmp_path / "off")])
    off = (tmp_path / "off" / "summary.md").read_text()
    assert "| evaluation duplicate | off | contamination.eval_threshold |" in off
    # A run that screens nothing says nothing of copy checks.
    aggregate.main(common + ["--out-dir", str(tmp_path / "plain")])
    assert "Copy checks" not in (tmp_path / "plain" / "summary.md").read_text()


def test_per_class_accuracy_and_the_classes_where_generation_and_retrieval_differ(tmp_path):
    names = ["ant", "bee", "cat"]
    paths = [
        _metrics(tmp_path, "baseline", 0, 50.0, {"ant": 50.0, "bee": 50.0, "cat": 50.0}),
        _metrics(tmp_path, "gen", 0, 60.0, {"ant": 90.0, "bee": 40.0, "cat": 50.0}),
        _metrics(tmp_path, "gen", 1, 60.0, {"ant": 70.0, "bee": 40.0, "cat": 50.0}),
        _metrics(tmp_path, "retr", 0, 55.0, {"ant": 40.0, "bee": 80.0, "cat": 50.0}),
    ]
    kinds = {"baseline": "real", "retr": "retrieve", "gen": "generate"}
    per_class = aggregate.per_class_table(paths, kinds, names)
    assert per_class.columns.tolist() == ["class", "baseline", "retr", "gen"]
    assert per_class.gen.tolist() == [80.0, 40.0, 50.0]  # the mean over seeds
    text = aggregate.largest_differences(per_class, aggregate.summarise(paths, kinds, {}), count=1)
    assert "| ant | 80.0 | 40.0 | +40.0 |" in text and "| bee | 40.0 | 80.0 | -40.0 |" in text


def test_cli_writes_cost_and_provenance(tmp_path):
    (tmp_path / "classes.txt").write_text("a\nb\n")
    root = tmp_path / "bench"
    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    benchmarks = {"generate/gen/shard0.tsv": (3600, 1800), "train/gen/seed0.tsv": (1800, 3600)}
    benchmarks["personalise/gen/shard0.tsv"] = (900, 0)  # on the method's own 4 GPUs
    benchmarks["embed_pool/shard0.tsv"] = (7200, 100)
    # What an earlier config of the experiment ran (another method, another seed) is not costed.
    benchmarks["generate/gen_removed/shard0.tsv"] = (3600, 3600)
    benchmarks["train/gen/seed7.tsv"] = (3600, 3600)
    benchmarks["evaluate/gen/seed1.tsv"] = (0, 0)  # a job of the second seed: counted, adding no hours
    # Pre-training lies under a root of its own and is costed where its file exists.
    pretrained = tmp_path / "pretrained"
    benchmarks["../pretrained/pretrain_clip/models_clip.tsv"] = (900, 900)
    for name, (wall, cpu) in benchmarks.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(header + f"{wall}\t0\t1\t1\t1\t1\t0\t0\t1\t{cpu}\n")
    benchmarks.pop("../pretrained/pretrain_clip/models_clip.tsv")
    added = tmp_path / "added.csv"
    pd.DataFrame({"path": [f"i{i}" for i in range(500)], "label": [0, 1] * 250}).to_csv(added, index=False)
    aggregate.main(
        ["--metrics", _metrics(tmp_path, "baseline", 0, 50.0), _metrics(tmp_path, "gen", 0, 52.0)]
        + ["--method-kinds", "baseline=real", "gen=generate", "--added", f"gen={added}"]
        + ["--experiment-benchmarks", str(root), "--seeds", "0", "--seeds", "1"]
        + ["--benchmark-root", str(pretrained)]
        + ["--benchmarks-if-present", str(pretrained / "pretrain_clip" / "models_clip.tsv")]
        + ["--benchmarks-if-present", str(pretrained / "pretrain_diffusion" / "models_diffusion.tsv")]
        + ["--gpus", "generate=1", "train=2", "embed_pool=1", "pretrain_clip=1", "personalise=1", "personalise/gen=4"]
        + ["--settings", json.dumps({"diffusion": {"model": "CompVis/stable-diffusion-v1-4", "revision": "main"}})]
        + ["--classes", str(tmp_path / "classes.txt"), "--out-dir", str(tmp_path)]
    )
    summary = pd.read_csv(tmp_path / "summary.csv").set_index("method")
    # generate: 1 h on 1 GPU; train: 0.5 h on 2 GPUs; personalise: 0.25 h on 4; 500 added images.
    assert summary.loc["gen", "gpu_hours"] == pytest.approx(3.0)
    assert summary.loc["gen", "cpu_hours"] == pytest.approx(1.5)
    assert summary.loc["gen", "gpu_hours_per_1k_added"] == pytest.approx(6.0)
    cost = pd.read_csv(tmp_path / "cost.csv").set_index("owner")
    assert cost.loc["shared: embed_pool", "gpu_hours"] == pytest.approx(2.0)  # listed apart, not in gen's hours
    assert cost.loc["shared: pretrain_clip", "gpu_hours"] == pytest.approx(0.25)
    assert "shared: pretrain_diffusion" not in cost.index  # its models were made before: no file
    assert not any("removed" in owner for owner in cost.index) and cost.loc["gen", "jobs"] == 4
    assert "| embed_pool | 1 | 2.000 |" in (tmp_path / "summary.md").read_text()
    provenance = json.loads((tmp_path / "provenance.json").read_text())
    assert provenance["diffusion"]["revision"] == "main"
    assert provenance["packages"]["torch"] and provenance["git_commit"]


def test_summary_counts_what_each_methods_clip_score_filter_dropped(tmp_path):
    metrics = [_metrics(tmp_path, "retrieve_text", 0, 70.0), _metrics(tmp_path, "gen_classname", 0, 60.0)]
    (tmp_path / "classes.txt").write_text("a\nb\n")
    tables = {
        "retrieve_text": {"min_clip_score": [0.25, 0.3], "kept": [2, 2], "dropped": [5, 1]},
        "gen_classname": {"min_clip_score": [np.nan, np.nan], "kept": [2, 2], "dropped": [0, 0]},  # no filter
    }
    options = []
    for method, columns in tables.items():
        pd.DataFrame({"label": [0, 1], "class": ["a", "b"], **columns}).to_csv(tmp_path / f"{method}.csv", index=False)
        options += ["--quality", f"{method}={tmp_path / f'{method}.csv'}"]
    aggregate.main(
        ["--metrics", *metrics, "--method-kinds", "retrieve_text=retrieve", "gen_classname=generate",
         "--classes", str(tmp_path / "classes.txt"), "--out-dir", str(tmp_path), *options]
    )  # fmt: skip
    summary = (tmp_path / "summary.md").read_text()
    assert "| retrieve_text | 0.25 to 0.3 (per class) | 6 | 4 |" in summary
    assert "| gen_classname |" not in summary.split("CLIP-score filter")[1]
    # Without a filtering method the summary has no such section.
    aggregate.main(
        ["--metrics", *metrics, "--method-kinds", "retrieve_text=retrieve", "gen_classname=generate",
         "--classes", str(tmp_path / "classes.txt"), "--out-dir", str(tmp_path), options[2], options[3]]
    )  # fmt: skip
    assert "CLIP-score filter" not in (tmp_path / "summary.md").read_text()


def _several_seeds(tmp_path, gains):
    """Three seeds of a baseline that varies a lot from seed to seed, and of methods
    the given points ahead of it on seeds 0, 1 and 2."""
    base = {0: 70.0, 1: 80.0, 2: 75.0}
    paths = [_metrics(tmp_path, "baseline", s, v) for s, v in base.items()]
    for method, ahead in gains.items():
        paths += [_metrics(tmp_path, method, s, base[s] + gain) for s, gain in zip(base, ahead)]
    kinds = {"baseline": "real", **{m: "retrieve" if m.startswith("retr") else "generate" for m in gains}}
    return aggregate.summarise(paths, kinds, {})


def test_the_closing_sentence_says_one_seed_supports_no_claim(tmp_path):
    paths = [_metrics(tmp_path, m, 0, v) for m, v in (("baseline", 70.0), ("retr", 75.0), ("gen", 71.0))]
    table = aggregate.summarise(paths, {"baseline": "real", "retr": "retrieve", "gen": "generate"}, {})
    sentence = aggregate.conclusion(table)
    assert sentence.startswith("With one seed the table supports no statement that a method beats the baseline")
    assert "retrieval and the best generation method differ" in sentence and "run more seeds" in sentence
    assert "significantly" not in sentence


def test_the_closing_sentence_names_the_significant_winners(tmp_path):
    # retr and gen are ahead on every seed; gen_small's gain is inside its noise.
    table = _several_seeds(tmp_path, {"retr": (6.0, 4.0, 5.0), "gen": (2.5, 1.5, 2.0), "gen_small": (0.8, -0.2, 0.3)})
    assert table.attrs["best_generation"] == "gen"
    sentence = aggregate.conclusion(table)
    assert sentence.startswith("Over 3 seeds, by paired 95% intervals, retr and gen beat the baseline significantly;")
    assert "gen_small" not in sentence
    assert "the best retrieval (retr) beats the best generation (gen) significantly (retr − gen: +3.00 [" in sentence
    assert sentence.endswith(" points).") and ". " not in sentence  # one sentence


def test_the_closing_sentence_says_when_nothing_is_significant(tmp_path):
    table = _several_seeds(tmp_path, {"retr": (1.2, -0.8, 0.2), "gen": (-0.6, 1.4, 0.4)})
    sentence = aggregate.conclusion(table)
    assert sentence.startswith("Over 3 seeds, by paired 95% intervals, no method beats the baseline significantly;")
    assert (
        "the best retrieval (retr) and the best generation (gen) do not differ significantly (retr − gen: -" in sentence
    )


def test_best_retrieval_against_best_generation_is_paired_over_shared_seeds(tmp_path):
    # Generation is about 1 point behind retrieval on each of the seeds both have; its extra
    # seed 3, far below, must not enter the difference.
    retr = {0: 70.0, 1: 80.0, 2: 75.0}
    gen = {0: 69.0, 1: 79.1, 2: 74.0}
    paths = [_metrics(tmp_path, "retr", s, v) for s, v in retr.items()]
    paths += [_metrics(tmp_path, "gen", s, v) for s, v in {**gen, 3: 10.0}.items()]
    paths += [_metrics(tmp_path, "baseline", s, 60.0) for s in retr]
    table = aggregate.summarise(paths, {"baseline": "real", "retr": "retrieve", "gen": "generate"}, {})
    mean, low, high = table.attrs["retrieval_vs_generation"]
    assert (mean, low, high) == pytest.approx(aggregate.paired_difference(retr, gen))
    assert mean == pytest.approx(0.9667, abs=1e-4) and 0 < low < mean < high < 2
    assert "the best retrieval (retr) beats the best generation (gen) significantly" in aggregate.conclusion(table)


def test_summary_ends_with_what_the_table_supports(tmp_path, capsys):
    paths = [_metrics(tmp_path, "baseline", 0, 70.0), _metrics(tmp_path, "gen", 0, 72.5)]
    (tmp_path / "classes.txt").write_text("a\nb\n")
    unreadable = tmp_path / "pool.csv"
    pd.DataFrame({"path": ["p.jpg"], "label": [-1], "reason": ["r"]}).to_csv(unreadable, index=False)
    aggregate.main(
        ["--metrics", *paths, "--method-kinds", "baseline=real", "gen=generate", "--unreadable", f"pool={unreadable}"]
        + ["--classes", str(tmp_path / "classes.txt"), "--out-dir", str(tmp_path)]
    )
    last = (tmp_path / "summary.md").read_text().strip().splitlines()[-1]
    assert last.startswith("What the table supports: With one seed the table supports no statement")
    assert capsys.readouterr().out.strip().endswith(last)


def _gains(tmp_path, gains: dict[str, list[float]]) -> list[str]:
    """Metrics of a baseline at 70% on three seeds and of methods ``gains`` points above it per seed."""
    paths = [_metrics(tmp_path, "baseline", s, 70.0) for s in range(3)]
    for method, per_seed in gains.items():
        paths += [_metrics(tmp_path, method, s, 70.0 + gain) for s, gain in enumerate(per_seed)]
    return paths


def test_the_gain_is_rank_correlated_with_each_diagnostic(tmp_path):
    # Mean gains 1, 2, 3, 4: vendi ranks them the same way (rho +1), fd_clip_train the reverse (-1);
    # coverage is known for two methods only, and precision is the same for every method.
    gains = {"m1": [1, 1, 1], "m2": [2, 2, 2], "m3": [3, 2, 4], "m4": [4, 4, 4]}
    kinds = {"baseline": "real"} | dict.fromkeys(gains, "generate")
    table = aggregate.summarise(_gains(tmp_path, gains), kinds, {})
    diagnostics = pd.DataFrame(
        {
            "method": ["m1", "m2", "m3", "m4"],
            "n_added": [10, 10, 10, 10],
            "vendi": [1.5, 2.0, 7.0, 9.0],
            "fd_clip_train": [0.9, 0.5, 0.3, 0.1],
            "coverage": [0.1, np.nan, np.nan, 0.5],
            "precision": [0.5, 0.5, 0.5, 0.5],
        }
    )
    correlation = gain_correlation.gain_correlation(table, diagnostics).set_index("diagnostic")
    assert list(correlation.index) == ["vendi", "fd_clip_train", "coverage", "precision"]  # not n_added
    assert correlation.loc["vendi", "spearman_rho"] == pytest.approx(1.0)
    assert correlation.loc["fd_clip_train", "spearman_rho"] == pytest.approx(-1.0)
    assert correlation.loc["vendi", "n_methods"] == 4
    assert np.isnan(correlation.loc["coverage", "spearman_rho"]) and correlation.loc["coverage", "n_methods"] == 2
    assert np.isnan(correlation.loc["precision", "spearman_rho"])
    markdown = gain_correlation.gain_correlation_markdown(correlation.reset_index())
    assert "| vendi | +1.00 | 0.000 | 4 |" in markdown and "| coverage | n/a |  | 2 |" in markdown


def test_the_cli_writes_the_correlation_only_with_diagnostics(tmp_path):
    gains = {"m1": [1, 1, 1], "m2": [3, 2, 2], "m3": [2, 4, 3]}  # means 1, 2.33, 3
    paths = _gains(tmp_path, gains)
    (tmp_path / "classes.txt").write_text("a\nb\n")
    arguments = ["--metrics", *paths, "--method-kinds", "baseline=real", "m1=retrieve", "m2=generate", "m3=generate"]
    arguments += ["--classes", str(tmp_path / "classes.txt"), "--out-dir", str(tmp_path)]
    aggregate.main(arguments)
    assert not (tmp_path / "gain_correlation.csv").exists()
    assert "Spearman" not in (tmp_path / "summary.md").read_text()
    pd.DataFrame({"method": ["m1", "m2", "m3"], "n_added": [5, 5, 5], "vendi": [3.0, 2.0, 1.0]}).to_csv(
        tmp_path / "diagnostics.csv", index=False
    )
    aggregate.main(arguments + ["--diagnostics", str(tmp_path / "diagnostics.csv")])
    written = pd.read_csv(tmp_path / "gain_correlation.csv")
    assert written.to_dict("records") == [{"diagnostic": "vendi", "spearman_rho": -1.0, "p_value": 0.0, "n_methods": 3}]
    assert "| vendi | -1.00 | 0.000 | 3 |" in (tmp_path / "summary.md").read_text()


def test_summary_gives_the_size_of_what_each_personalised_method_learned(tmp_path):
    from safetensors.numpy import save_file

    # Two shards of learned tokens (2 vectors of 768 per class) and one file of a conditioning per
    # cluster (3 clusters of 77 x 768, their pooled 3 x 1280) with the clusters' sizes, which are counts.
    shards = [tmp_path / f"token{shard}.safetensors" for shard in (0, 1)]
    for shard, path in enumerate(shards):
        save_file({f"token.{shard}": np.zeros((2, 768), np.float32)}, str(path), metadata={"target": "token"})
    clusters = tmp_path / "conditioning.safetensors"
    tensors = {"conditioning.0": np.zeros((3, 77, 768), np.float32), "pooled.0": np.zeros((3, 1280), np.float32)}
    save_file(tensors | {"cluster_sizes.0": np.ones(3, np.float32)}, str(clusters), metadata={"target": "conditioning"})
    kinds = {"baseline": "real", "gen_ti": "generate", "gen_cluster": "generate", "gen_classname": "generate"}
    (tmp_path / "classes.txt").write_text("a\nb\n")
    aggregate.main(
        ["--metrics", *[_metrics(tmp_path, method, 0, 60.0) for method in kinds]]
        + ["--method-kinds", *[f"{method}={kind}" for method, kind in kinds.items()]]
        + [f"--learned=gen_ti={path}" for path in shards]
        + [f"--learned=gen_cluster={clusters}"]
        + ["--classes", str(tmp_path / "classes.txt"), "--out-dir", str(tmp_path)]
    )
    summary = pd.read_csv(tmp_path / "summary.csv").set_index("method")
    assert summary.loc["gen_ti", "learned_parameters"] == 2 * 2 * 768
    assert summary.loc["gen_cluster", "learned_parameters"] == 3 * 77 * 768 + 3 * 1280
    # The files' bytes: 4 per float32 number and a short header each.
    for method, numbers in (("gen_ti", 2 * 2 * 768), ("gen_cluster", 3 * 77 * 768 + 3 * 1280 + 3)):
        assert 4 * numbers < summary.loc[method, "learned_bytes"] < 4 * numbers + 1000
    assert summary.loc[["baseline", "gen_classname"], ["learned_bytes", "learned_parameters"]].isna().all().all()
    lines = (tmp_path / "summary.md").read_text().splitlines()
    header = [cell.strip() for cell in lines[0].split("|")]
    rows = {line.split("|")[1].strip(): [cell.strip() for cell in line.split("|")] for line in lines[2:6]}
    learned = {method: cells[header.index("learned parameters")] for method, cells in rows.items()}
    assert learned == {"baseline": "", "gen_ti": "3.07k", "gen_cluster": "181k", "gen_classname": ""}
    assert rows["gen_cluster"][header.index("learned MB")] == "0.692"  # 181,248 float32 and the counts: 725,004 bytes


def test_a_summary_without_personalisation_has_no_learned_size_in_its_table(tmp_path):
    (tmp_path / "classes.txt").write_text("a\nb\n")
    aggregate.main(
        ["--metrics", _metrics(tmp_path, "baseline", 0, 60.0), "--method-kinds", "baseline=real"]
        + ["--classes", str(tmp_path / "classes.txt"), "--out-dir", str(tmp_path)]
    )
    assert pd.read_csv(tmp_path / "summary.csv").learned_bytes.isna().all()
    assert "learned" not in (tmp_path / "summary.md").read_text()
