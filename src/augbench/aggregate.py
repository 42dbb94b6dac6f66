"""Summarise a finished run: one table of every method, what each costs, per-class accuracy.

    python -m augbench.aggregate --metrics results/demo/metrics/*/seed*.json \
        --method-kinds baseline=real retrieve_text=retrieve ... --added METHOD=MANIFEST ... \
        --classes classes.txt --experiment-benchmarks benchmarks/runs/demo --seeds 0 \
        --gpus generate=1 ... --unreadable STAGE=CSV ... --settings '{...}' --out-dir results/demo

Writes into ``--out-dir``:
- ``summary.csv`` / ``summary.md``: per method top-1 mean ± sample std over seeds (top-5 too
  where there are more than 10 classes; with one seed the std is empty in the csv and
  ``n/a`` in the markdown), the expected calibration error in percentage points, mean ± sample
  std over seeds (``ece_mean``, ``ece_std``; empty in the csv and ``n/a`` in the markdown where
  a seed's metrics predate it), the difference to ``baseline`` and to the best retrieval method
  with a 95% confidence interval over paired seeds, images added per class, and the GPU
  and CPU hours of the method's own jobs; per further evaluation set (config ``evaluation_sets``)
  ``top1_<name>_mean``/``_std``, ``ece_<name>_mean``/``_std`` and ``top1_<name>_vs_baseline``
  with its interval (a table of their own in ``summary.md``); ``summary.md`` ends with one
  sentence on what the table supports (``conclusion``);
- ``per_class.csv``: per-class top-1 of every method (mean over seeds); ``summary.md``
  names the classes where the best generation and the best retrieval method differ most;
- ``cost.csv``: jobs and hours per method and per shared rule (``augbench.cost``);
- ``unreadable.csv``: the images each stage skipped, with the reason (counted in ``summary.md``);
- in ``summary.md``, the images each method's CLIP-score filter dropped (``--quality``, the
  per-class tables of ``augbench.quality``), where a method filters;
- in ``summary.md``, each copy check's threshold (``--copy-threshold``) and, where calibrated
  (``--copy-calibration``, ``augbench.copy_calibration``'s JSON), the share of planted copies it
  catches and of pairs of distinct images it would call copies (the false-positive rate);
- ``excluded.csv``: the pool images retrieval left out (copies of evaluation or training images,
  safety tags; ``augbench.exclude``), with the image matched (counted per reason in ``summary.md``);
- in ``summary.md``, the failed downloads of methods whose results were URLs, and the downloaded
  images their screening left out (``augbench.screen_downloads``);
- with ``--diagnostics`` (diagnostics.csv), ``gain_correlation.csv`` and its table in ``summary.md``:
  per diagnostic, Spearman's rank correlation over methods with the Δ top-1 over baseline;
- in ``summary.csv`` and ``summary.md``, per personalised generation method (``--learned``) the size
  of what personalisation learned: its artefacts' bytes over all shards (``learned_bytes``) and the
  learned numbers they hold (``learned_parameters``, counted from the safetensors headers);
  empty for the other methods;
- ``provenance.json``: what produced the rows: resolved method configs, model ids and
  revisions, package versions, the project's git commit.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
from safetensors import safe_open
from scipy import stats

from augbench import copies, cost
from augbench.cli import run, start_logging
from augbench.files import atomic_path, read_classes, read_json, read_manifest, write_json, write_text
from augbench.gain_correlation import gain_correlation, gain_correlation_markdown

log = logging.getLogger(__name__)

PACKAGES = ["augbench", "torch", "torchvision", "diffusers", "transformers", "open_clip_torch", "peft", "faiss-cpu"]
PACKAGES += ["numpy", "snakemake"]


def method_of(metrics_path: str) -> str:
    """Metrics live at ``.../metrics/<method>/seed<k>.json``."""
    return Path(metrics_path).parent.name


def seed_of(metrics_path: str) -> int:
    return int(Path(metrics_path).stem.removeprefix("seed"))


def read_metrics(metrics_paths: list[str], kinds: dict[str, str]) -> dict[str, dict[int, dict]]:
    """method -> seed -> metrics."""
    runs: dict[str, dict[int, dict]] = {}
    for path in metrics_paths:
        runs.setdefault(method_of(path), {})[seed_of(path)] = read_json(path)
    unknown = set(runs) - set(kinds)
    if unknown:
        raise ValueError(f"metrics for method(s) {sorted(unknown)} that have no kind")
    return runs


def paired_difference(a: dict[int, float], b: dict[int, float]) -> tuple[float, float, float]:
    """Mean of a - b over the seeds both have, with a 95% t-interval; the interval is NaN under 2 seeds."""
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return (np.nan, np.nan, np.nan)
    differences = np.array([a[s] - b[s] for s in seeds])
    mean = float(differences.mean())
    if len(seeds) < 2:
        return (mean, np.nan, np.nan)
    half = stats.t.ppf(0.975, len(seeds) - 1) * differences.std(ddof=1) / np.sqrt(len(seeds))
    return (mean, mean - half, mean + half)


def spread(values: list[float]) -> float:
    """Sample std over seeds, as the study reports mean ± std; NaN for one seed, whose spread is not known."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else np.nan


def calibration(seeds: dict[int, dict]) -> tuple[float, float]:
    """Mean and sample std over seeds of the expected calibration error; NaN for both if a seed's
    metrics have none (evaluated before augbench measured it), so that the mean is over the same
    seeds as top-1's."""
    values = [m.get("ece") for m in seeds.values()]
    if any(value is None for value in values):
        return (np.nan, np.nan)
    return (float(np.mean(values)), spread(values))


def evaluation_set_names(runs: dict[str, dict[int, dict]]) -> list[str]:
    """The further evaluation sets the metrics hold (``top1_<name>``), in the order first met."""
    names = {}
    for seeds in runs.values():
        for metrics in seeds.values():
            names.update({key.removeprefix("top1_"): None for key in metrics if key.startswith("top1_")})
    return list(names)


def evaluation_set_columns(runs: dict[str, dict[int, dict]], method: str, name: str, baseline: str | None) -> dict:
    """A method's columns for one evaluation set: top-1 and ECE mean and std over seeds, and the
    paired difference in top-1 to the baseline; NaN where a seed was not evaluated on the set."""
    seeds = runs[method]
    columns = {}
    for metric in ("top1", "ece"):
        values = [m.get(f"{metric}_{name}") for m in seeds.values()]
        known = None not in values
        columns[f"{metric}_{name}_mean"] = float(np.mean(values)) if known else np.nan
        columns[f"{metric}_{name}_std"] = spread(values) if known else np.nan
    difference = (np.nan,) * 3
    if baseline is not None and baseline != method:
        top1 = {seed: m[f"top1_{name}"] for seed, m in seeds.items() if f"top1_{name}" in m}
        reference = {seed: m[f"top1_{name}"] for seed, m in runs[baseline].items() if f"top1_{name}" in m}
        difference = paired_difference(top1, reference)
    key = f"top1_{name}_vs_baseline"
    columns[key], columns[f"{key}_ci_low"], columns[f"{key}_ci_high"] = difference
    return columns


def best_of_kind(top1: dict[str, dict[int, float]], kinds: dict[str, str], kind: str) -> str | None:
    """The method of a kind with the highest mean top-1 over its seeds; None if the run has none."""
    candidates = [method for method in top1 if kinds[method] == kind]
    return max(candidates, key=lambda method: np.mean(list(top1[method].values()))) if candidates else None


def summarise(
    metrics_paths: list[str], kinds: dict[str, str], added: dict[str, float], n_classes: int | None = None
) -> pd.DataFrame:
    """One row per method (registry order): accuracy over seeds and the paired differences.

    ``attrs`` name the best retrieval and generation methods and hold their paired difference
    (retrieval - generation, mean and 95% interval over shared seeds), for ``conclusion``."""
    runs = read_metrics(metrics_paths, kinds)
    top1 = {method: {seed: m["top1"] for seed, m in seeds.items()} for method, seeds in runs.items()}
    best_retrieval = best_of_kind(top1, kinds, "retrieve")
    best_generation = best_of_kind(top1, kinds, "generate")
    set_names = evaluation_set_names(runs)
    rows = []
    for method in [m for m in kinds if m in runs]:
        values = list(top1[method].values())
        row = {
            "method": method,
            "kind": kinds[method],
            "n_seeds": len(values),
            "top1_mean": float(np.mean(values)),
            "top1_std": spread(values),
        }
        if n_classes is not None and n_classes > 10:
            top5 = [m["top5"] for m in runs[method].values()]
            row["top5_mean"] = float(np.mean(top5))
            row["top5_std"] = spread(top5)
        row["ece_mean"], row["ece_std"] = calibration(runs[method])
        row["n_added_per_class"] = added.get(method, 0.0)
        references = {"baseline": "baseline" if "baseline" in top1 else None, "best_retrieval": best_retrieval}
        for name, reference in references.items():
            # A method is not compared with itself: its own cell stays empty.
            compared = reference is not None and reference != method
            difference = paired_difference(top1[method], top1[reference]) if compared else (np.nan,) * 3
            row[f"vs_{name}"], row[f"vs_{name}_ci_low"], row[f"vs_{name}_ci_high"] = difference
        for name in set_names:
            row.update(evaluation_set_columns(runs, method, name, references["baseline"]))
        rows.append(row)
    table = pd.DataFrame(rows)
    table.attrs["evaluation_sets"] = set_names
    table.attrs["best_retrieval"] = best_retrieval
    table.attrs["best_generation"] = best_generation
    if best_retrieval and best_generation:
        table.attrs["retrieval_vs_generation"] = paired_difference(top1[best_retrieval], top1[best_generation])
    return table


def per_class_table(metrics_paths: list[str], kinds: dict[str, str], classes: list[str]) -> pd.DataFrame:
    """Per-class top-1 of every method, the mean over its seeds: a row per class, a column per method."""
    runs = read_metrics(metrics_paths, kinds)
    table = pd.DataFrame({"class": classes})
    for method in [m for m in kinds if m in runs]:
        per_seed = pd.DataFrame([m["per_class_top1"] for m in runs[method].values()]).astype(float)
        table[method] = per_seed.mean().reindex(classes).to_numpy()
    return table


def largest_differences(per_class: pd.DataFrame, summary: pd.DataFrame, count: int = 5) -> str:
    """The classes where the best generation method and the best retrieval method differ most, as markdown."""
    best = {
        kind: summary[summary.kind == kind].sort_values("top1_mean").method.iloc[-1:]
        for kind in ("generate", "retrieve")
    }
    if any(len(names) == 0 for names in best.values()):
        return ""
    generation, retrieval = best["generate"].item(), best["retrieve"].item()
    difference = (per_class[generation] - per_class[retrieval]).rename("difference")
    frame = pd.concat([per_class["class"], per_class[generation], per_class[retrieval], difference], axis=1).dropna()
    lines = [
        f"\nClasses where the best generation ({generation}) and the best retrieval ({retrieval}) "
        "differ most (per-class top-1 %, mean over seeds; all classes in per_class.csv):\n",
        f"| class | {generation} | {retrieval} | difference |",
        "|---|---|---|---|",
    ]
    ranked = frame.sort_values("difference", kind="stable")
    chosen = pd.concat([ranked.tail(count).iloc[::-1], ranked.head(count)]).drop_duplicates("class")
    for row in chosen.itertuples(index=False):
        lines.append(f"| {row[0]} | {row[1]:.1f} | {row[2]:.1f} | {row[3]:+.1f} |")
    return "\n".join(lines) + "\n"


# Tensors of a personalisation artefact that are not learned (augbench.personalisation's
# save_personalisation): the share of a class's images in each of its clusters.
NOT_LEARNED = ("cluster_sizes.",)


def learned_size(paths: list[str]) -> tuple[int, int]:
    """Bytes of a method's personalisation artefacts (every shard's) and the learned numbers they
    hold, counted from the shapes in their safetensors headers without reading the tensors."""
    size = parameters = 0
    for path in paths:
        size += Path(path).stat().st_size
        with safe_open(path, framework="numpy") as artefact:
            for name in artefact.keys():
                if not name.startswith(NOT_LEARNED):
                    parameters += int(np.prod(artefact.get_slice(name).get_shape()))
    return size, parameters


def add_learned_sizes(table: pd.DataFrame, artefacts: dict[str, list[str]]) -> None:
    """The columns learned_bytes and learned_parameters: a personalised method's, empty for the rest."""
    sizes = {method: learned_size(paths) for method, paths in artefacts.items()}
    for column, index in (("learned_bytes", 0), ("learned_parameters", 1)):
        values = [sizes[method][index] if method in sizes else None for method in table.method]
        table[column] = pd.array(values, dtype="Int64")


def _megabytes(size) -> str:
    return "" if pd.isna(size) else f"{size / 2**20:.3g}"


def _count(number) -> str:
    """A count of learned numbers, short: 768, 59.0k, 3.2M."""
    if pd.isna(number):
        return ""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if number >= scale:
            return f"{number / scale:.3g}{unit}"
    return str(number)


def _mean_and_spread(mean: float, std: float) -> str:
    if np.isnan(mean):
        return "n/a"
    return f"{mean:.2f} ± n/a" if np.isnan(std) else f"{mean:.2f} ± {std:.2f}"


def _interval(mean: float, low: float, high: float) -> str:
    if np.isnan(mean):
        return ""
    return f"{mean:+.2f} [n/a]" if np.isnan(low) else f"{mean:+.2f} [{low:+.2f}, {high:+.2f}]"


def to_markdown(table: pd.DataFrame) -> str:
    """The summary as a markdown table: accuracy as mean ± sample std over seeds, a difference
    with its 95% interval over paired seeds in brackets; ``n/a`` where one seed leaves it unknown."""
    best = table.attrs.get("best_retrieval")
    top5 = "top5_mean" in table
    headers = ["method", "kind", "seeds", "top-1 % (mean ± std)", "Δ baseline [95% CI]"]
    headers += [f"Δ best retrieval ({best}) [95% CI]"] if best else []
    headers += ["top-5 % (mean ± std)"] if top5 else []
    headers += ["ECE % (mean ± std)"]
    headers += ["added per class"]
    costed = "gpu_hours" in table
    headers += ["GPU h", "CPU h", "GPU h per 1k added"] if costed else []
    learned = "learned_bytes" in table and table.learned_bytes.notna().any()
    headers += ["learned MB", "learned parameters"] if learned else []
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in table.to_dict("records"):
        cells = [row["method"], row["kind"], str(row["n_seeds"]), _mean_and_spread(row["top1_mean"], row["top1_std"])]
        cells.append(_interval(row["vs_baseline"], row["vs_baseline_ci_low"], row["vs_baseline_ci_high"]))
        if best:
            cells.append(
                _interval(row["vs_best_retrieval"], row["vs_best_retrieval_ci_low"], row["vs_best_retrieval_ci_high"])
            )
        if top5:
            cells.append(_mean_and_spread(row["top5_mean"], row["top5_std"]))
        cells.append(_mean_and_spread(row["ece_mean"], row["ece_std"]))
        cells.append(f"{row['n_added_per_class']:g}")
        if costed:
            per_1k = row["gpu_hours_per_1k_added"]
            cells += [f"{row['gpu_hours']:.3f}", f"{row['cpu_hours']:.3f}", "" if np.isnan(per_1k) else f"{per_1k:.3f}"]
        if learned:
            cells += [_megabytes(row["learned_bytes"]), _count(row["learned_parameters"])]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append(
        "\nAccuracy: mean ± sample std over the method's seeds (n/a with one seed). Δ: the mean of the per-seed "
        "differences over the seeds both methods share, with its 95% t-interval (n/a under two shared seeds). "
        "ECE: expected calibration error, the gap between confidence and accuracy in percentage points, weighted "
        "over 15 confidence bins (0: confidence matches accuracy; n/a where a seed's metrics predate it)."
        + (
            " Learned: the size of what personalisation learned (its artefacts over all shards, MB = 2^20 bytes) "
            "and the learned numbers it holds."
            if learned
            else ""
        )
    )
    return "\n".join(lines) + "\n"


def evaluation_sets_markdown(table: pd.DataFrame) -> str:
    """Accuracy on each further evaluation set (evaluation_sets), as the summary's table gives it on
    dataset.val: top-1 mean ± std, its paired difference to the baseline, ECE."""
    names = table.attrs.get("evaluation_sets") or [
        column.removeprefix("top1_").removesuffix("_vs_baseline")
        for column in table.columns
        if column.startswith("top1_") and column.endswith("_vs_baseline")
    ]
    if not names:
        return ""
    headers = ["method"]
    for name in names:
        headers += [f"{name}: top-1 % (mean ± std)", f"{name}: Δ baseline [95% CI]", f"{name}: ECE %"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in table.to_dict("records"):
        cells = [row["method"]]
        for name in names:
            key = f"top1_{name}_vs_baseline"
            cells.append(_mean_and_spread(row[f"top1_{name}_mean"], row[f"top1_{name}_std"]))
            cells.append(_interval(row[key], row[f"{key}_ci_low"], row[f"{key}_ci_high"]))
            cells.append(_mean_and_spread(row[f"ece_{name}_mean"], row[f"ece_{name}_std"]))
        lines.append("| " + " | ".join(cells) + " |")
    return (
        f"\nThe same models on the further evaluation set(s) {', '.join(names)} (config evaluation_sets; "
        "top1_<name> columns of summary.csv), with the same statistics:\n\n" + "\n".join(lines) + "\n"
    )


def _names(methods: list[str]) -> str:
    return methods[0] if len(methods) == 1 else ", ".join(methods[:-1]) + " and " + methods[-1]


def conclusion(table: pd.DataFrame) -> str:
    """One sentence on what the table supports: the methods whose paired 95% interval against the
    baseline lies above zero, and whether the best retrieval and the best generation method differ
    (their paired interval excludes zero). With one seed there are no intervals, and it says so."""
    rvg = table.attrs.get("retrieval_vs_generation")
    best = {"retrieval": table.attrs.get("best_retrieval"), "generation": table.attrs.get("best_generation")}
    compared = table[table.vs_baseline.notna()]
    tested = compared[compared.vs_baseline_ci_low.notna()]
    if compared.empty and rvg is None:
        return ""
    if tested.empty and (rvg is None or np.isnan(rvg[1])):
        seeds = "one seed" if table.n_seeds.max() <= 1 else "no two seeds shared by the methods compared"
        claims = ["that a method beats the baseline"] if not compared.empty else []
        claims += ["that the best retrieval and the best generation method differ"] if rvg is not None else []
        return (
            f"With {seeds} the table supports no statement {' or '.join(claims)}, since a difference between "
            'single runs can be seed-to-seed noise: run more seeds (config `seeds`, e.g. `--config "seeds=[0,1,2]"`).'
        )
    parts = []
    if not compared.empty:
        winners = tested[tested.vs_baseline_ci_low > 0].method.tolist()
        if winners:
            parts.append(f"{_names(winners)} {'beats' if len(winners) == 1 else 'beat'} the baseline significantly")
        else:
            parts.append("no method beats the baseline significantly")
        untested = compared[compared.vs_baseline_ci_low.isna()].method.tolist()
        if untested:
            parts[-1] += f" ({_names(untested)} not tested: under two seeds shared with the baseline)"
    if rvg is not None:
        mean, low, high = rvg
        if np.isnan(low):
            parts.append(
                f"whether the best retrieval ({best['retrieval']}) and the best generation ({best['generation']}) "
                "differ is not known (under two shared seeds)"
            )
        else:
            difference = f"{best['retrieval']} − {best['generation']}: {mean:+.2f} [{low:+.2f}, {high:+.2f}] points"
            if low > 0 or high < 0:
                winner, loser = ("retrieval", "generation") if low > 0 else ("generation", "retrieval")
                parts.append(
                    f"the best {winner} ({best[winner]}) beats the best {loser} ({best[loser]}) "
                    f"significantly ({difference})"
                )
            else:
                parts.append(
                    f"the best retrieval ({best['retrieval']}) and the best generation ({best['generation']}) "
                    f"do not differ significantly ({difference})"
                )
    counts = sorted(set(table.n_seeds))
    seeds = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]} to {counts[-1]}"
    return f"Over {seeds} seeds, by paired 95% intervals, " + "; ".join(parts) + "."


def gather_unreadable(lists: list[tuple[str, str]]) -> pd.DataFrame:
    """One table of the skipped images: stage, path, label, reason."""
    frames = [read_manifest(path).assign(stage=stage) for stage, path in lists]
    columns = ["stage", "path", "label", "reason"]
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True).reindex(columns=columns)


def unreadable_markdown(unreadable: pd.DataFrame, stages: list[str]) -> str:
    if unreadable.empty:
        return "\nEvery image read was readable; none was skipped.\n"
    counts = unreadable.stage.value_counts()
    lines = [f"| {stage} | {int(counts.get(stage, 0))} |" for stage in dict.fromkeys(stages)]
    return (
        f"\n{len(unreadable)} unreadable image(s) were skipped (each listed with its reason in unreadable.csv):\n\n"
        "| stage | skipped |\n|---|---|\n" + "\n".join(lines) + "\n"
    )


def quality_markdown(tables: list[tuple[str, str]]) -> str:
    """Per method with a CLIP-score filter: its thresholds and the images it dropped."""
    lines = []
    for method, path in tables:
        table = pd.read_csv(path)
        thresholds = table.min_clip_score.dropna()
        if thresholds.empty:
            continue
        low, high = thresholds.min(), thresholds.max()
        threshold = f"{low:g}" if low == high else f"{low:g} to {high:g} (per class)"
        lines.append(f"| {method} | {threshold} | {int(table.dropped.sum())} | {int(table.kept.sum())} |")
    if not lines:
        return ""
    return (
        "\nCLIP-score filter: images below their class's min_clip_score, passed over by retrieval "
        "or made again by generation (per class in added/<method>/quality.csv):\n\n"
        "| method | min_clip_score | dropped | added |\n|---|---|---|---|\n" + "\n".join(lines) + "\n"
    )


def _share(share: float) -> str:
    return f"{100 * share:.3g}%"


def _images_share(calibration: dict) -> str:
    """The share of probed images with a distinct one at or above the threshold (n/a in a calibration
    made before it was measured)."""
    if "false_positive_images" not in calibration:
        return "n/a"
    return f"{_share(calibration['false_positive_images'])} of {calibration['images_probed']:,}"


def copy_checks_markdown(thresholds: list[tuple[str, str]], calibrations: list[tuple[str, str]]) -> str:
    """Per copy check (eval, train): its threshold, set in the config (a number, or off) or calibrated
    (auto), and for a calibrated one the share of planted copies caught and the false-positive rate."""
    rows = {}
    for check, value in thresholds:
        setting = f"contamination.{check}_threshold"
        rows[check] = f"| {value} | {setting} | n/a | n/a | n/a |"
    for check, path in calibrations:
        found = copies.read_calibration(path)
        caught = ", ".join(f"{name} {_share(share)}" for name, share in found["catch_by_transform"].items())
        rows[check] = (
            f"| {found['threshold']:.4f} | auto: catches {_share(found['target_catch_share'])} of planted copies "
            f"| {_share(found['catch_share'])} of {found['copies']:,} ({caught}) "
            f"| {_share(found['false_positive_rate'])} of {found['pairs']:,} "
            f"| {_images_share(found)} |"
        )
    if not rows:
        return ""
    lines = [f"| {copies.CHECK_REASONS[check]} {row}" for check, row in sorted(rows.items())]
    return (
        "\nCopy checks: a candidate at or above a threshold of CLIP similarity to a validation (evaluation "
        "duplicate) or training image (training duplicate) is left out; an auto threshold is calibrated on "
        "copies planted of a sample of those images (contamination/<check>_threshold.json); it would call "
        "the share of pairs of distinct images in the fifth column copies, and the last column is the share "
        "of the reference images with a distinct one at or above it (about the share of distinct pool images "
        "like them the screen leaves out):\n\n"
        "| check | threshold | set by | planted copies caught | distinct pairs at or above "
        "| images with a distinct one at or above |\n"
        "|---|---|---|---|---|---|\n" + "\n".join(lines) + "\n"
    )


def excluded_markdown(excluded: pd.DataFrame) -> str:
    """Pool images left out of retrieval, counted per reason (a pool image may have several)."""
    reasons = [copies.EVAL_DUPLICATE, copies.TRAIN_DUPLICATE, copies.SAFETY_TAG]
    counts = excluded.reason.value_counts()
    lines = [f"| {reason} | {int(counts.get(reason, 0))} |" for reason in dict.fromkeys(reasons + list(counts.index))]
    return (
        f"\n{excluded.pool_row.nunique()} pool image(s) were left out of retrieval "
        "(each listed with the image or tag it matched in excluded.csv):\n\n"
        "| reason | pool images |\n|---|---|\n" + "\n".join(lines) + "\n"
    )


def downloads_markdown(failures: list[tuple[str, str]], excluded: list[tuple[str, str]] = ()) -> str:
    """Per method whose results were URLs: how many downloads failed, and how many downloaded
    images screening left out (copies of evaluation or training images, unreadable files);
    each class kept its quota from further-ranked candidates."""
    if not failures:
        return ""
    left_out = {method: pd.read_csv(path, keep_default_na=False) for method, path in excluded}
    lines = []
    for method, path in failures:
        table = left_out.get(method)
        reasons = (
            "" if table is None else ", ".join(f"{n} {reason}" for reason, n in table.reason.value_counts().items())
        )
        screened = (
            "not screened" if table is None else f"{table.pool_row.nunique()} {f'({reasons})' if reasons else ''}"
        )
        lines.append(f"| {method} | {len(pd.read_csv(path))} | {screened.strip()} |")
    return (
        "\nDownloads of URL results, failed or left out by screening and replaced by further-ranked "
        "candidates (listed in added/<method>/download_failures.csv and excluded.csv):"
        "\n\n| method | failed downloads | left out |\n|---|---|---|\n" + "\n".join(lines) + "\n"
    )


def cost_markdown(costs: pd.DataFrame) -> str:
    shared = costs[costs.owner.str.startswith("shared: ")]
    if shared.empty:
        return ""
    lines = [
        "\nShared jobs, paid once for all methods "
        "(a user with precomputed embeddings or pretrained models skips them):\n",
        "| rule | jobs | GPU h | CPU h |",
        "|---|---|---|---|",
    ]
    for row in shared.itertuples():
        lines.append(
            f"| {row.owner.removeprefix('shared: ')} | {row.jobs} | {row.gpu_hours:.3f} | {row.cpu_hours:.3f} |"
        )
    return "\n".join(lines) + "\n"


def git_commit() -> str:
    """The commit of the augbench checkout that ran, with "-dirty" if it had changes; "unknown" if not a checkout."""
    source = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "-C", source, "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
        status = subprocess.run(
            ["git", "-C", source, "status", "--porcelain"], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit.stdout.strip() + ("-dirty" if status.stdout.strip() else "")


def package_versions() -> dict[str, str | None]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def provenance(settings: dict) -> dict:
    return {**settings, "git_commit": git_commit(), "packages": package_versions()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--metrics", nargs="+", required=True, help="per-seed metrics JSON files")
    parser.add_argument("--method-kinds", nargs="+", required=True, metavar="METHOD=KIND")
    parser.add_argument("--added", nargs="*", default=[], metavar="METHOD=MANIFEST", help="added-image manifests")
    parser.add_argument("--classes", required=True, help="class list, for images added per class")
    parser.add_argument(
        "--experiment-benchmarks",
        help="the experiment's benchmark folder (<rule>/[<method>/]<job>.tsv): its methods' and seeds' jobs",
    )
    parser.add_argument(
        "--seeds", action="append", type=int, default=[], help="a seed of the experiment; repeat for each"
    )
    parser.add_argument(
        "--benchmarks-if-present",
        action="append",
        default=[],
        help="a benchmark file costed where it exists (pre-training, which models made before skip); repeat for each",
    )
    parser.add_argument(
        "--benchmark-root",
        action="append",
        default=[],
        help="a folder benchmark files lie under, <rule>/[<method>/]<job>.tsv; repeat for each",
    )
    parser.add_argument(
        "--gpus", nargs="*", default=[], metavar="RULE=N", help="GPUs a job of each GPU rule (or RULE/METHOD) asks for"
    )
    parser.add_argument(
        "--unreadable",
        action="append",
        default=[],
        metavar="STAGE=CSV",
        help="a list of the images a stage skipped; repeat for each",
    )
    parser.add_argument(
        "--quality",
        action="append",
        default=[],
        metavar="METHOD=CSV",
        help="a method's CLIP-score filter counts per class; repeat for each",
    )
    parser.add_argument(
        "--learned",
        action="append",
        default=[],
        metavar="METHOD=SAFETENSORS",
        help="a personalisation artefact of a method (one per shard); repeat for each",
    )
    parser.add_argument(
        "--copy-threshold",
        action="append",
        default=[],
        metavar="CHECK=THRESHOLD",
        help="a copy check (eval, train) and the threshold the config set (a number, or off); repeat for each",
    )
    parser.add_argument(
        "--copy-calibration",
        action="append",
        default=[],
        metavar="CHECK=JSON",
        help="a copy check and its calibrated threshold (augbench.copy_calibration); repeat for each",
    )
    parser.add_argument("--excluded", help="the table of pool images retrieval left out (augbench.exclude)")
    parser.add_argument(
        "--download-failures",
        action="append",
        default=[],
        metavar="METHOD=CSV",
        help="a method's list of failed downloads; repeat for each",
    )
    parser.add_argument(
        "--download-excluded",
        action="append",
        default=[],
        metavar="METHOD=CSV",
        help="the downloaded images of a method that screening left out (augbench.screen_downloads); repeat for each",
    )
    parser.add_argument(
        "--diagnostics",
        help="diagnostics.csv (augbench.diagnostics): writes gain_correlation.csv and its table in summary.md",
    )
    parser.add_argument("--settings", default="{}", help="JSON of the config that produced the run, for provenance")
    parser.add_argument("--out-dir", required=True)
    args = parser.parse_args(argv)
    start_logging()
    kinds = dict(item.split("=", 1) for item in args.method_kinds)
    classes = read_classes(args.classes)
    added_manifests = dict(item.split("=", 1) for item in args.added)
    added_images = {method: len(read_manifest(path)) for method, path in added_manifests.items()}
    table = summarise(args.metrics, kinds, {m: n / len(classes) for m, n in added_images.items()}, len(classes))
    out_dir = Path(args.out_dir)

    costs = pd.DataFrame(columns=cost.COLUMNS)
    benchmarks = [path for path in args.benchmarks_if_present if Path(path).is_file()]
    roots = list(args.benchmark_root)
    if args.experiment_benchmarks:
        benchmarks = cost.experiment_benchmarks(args.experiment_benchmarks, list(kinds), args.seeds) + benchmarks
        roots.append(args.experiment_benchmarks)
    if benchmarks:
        gpus = {rule: int(n) for rule, n in (item.split("=", 1) for item in args.gpus)}
        jobs = cost.job_costs(benchmarks, roots, list(kinds), gpus)
        costs = cost.cost_table(jobs, list(kinds), added_images)
        own = costs.set_index("owner")
        for column in ("gpu_hours", "cpu_hours", "gpu_hours_per_1k_added"):
            table[column] = [own[column].get(method, np.nan) for method in table.method]
    artefacts: dict[str, list[str]] = {}
    for method, path in (item.split("=", 1) for item in args.learned):
        artefacts.setdefault(method, []).append(path)
    add_learned_sizes(table, artefacts)
    with atomic_path(out_dir / "cost.csv") as tmp:
        costs.to_csv(tmp, index=False, float_format="%.5f")

    per_class = per_class_table(args.metrics, kinds, classes)
    with atomic_path(out_dir / "per_class.csv") as tmp:
        per_class.to_csv(tmp, index=False, float_format="%.2f")

    lists = [tuple(item.split("=", 1)) for item in args.unreadable]
    unreadable = gather_unreadable(lists)
    with atomic_path(out_dir / "unreadable.csv") as tmp:
        unreadable.to_csv(tmp, index=False)

    excluded = pd.read_csv(args.excluded) if args.excluded else pd.DataFrame(columns=copies.COLUMNS)
    with atomic_path(out_dir / "excluded.csv") as tmp:
        excluded.to_csv(tmp, index=False)

    with atomic_path(out_dir / "summary.csv") as tmp:
        table.to_csv(tmp, index=False, float_format="%.4f")
    report = (
        to_markdown(table)
        + evaluation_sets_markdown(table)
        + cost_markdown(costs)
        + largest_differences(per_class, table)
        + unreadable_markdown(unreadable, [stage for stage, _ in lists])
        + quality_markdown([tuple(item.split("=", 1)) for item in args.quality])
        + copy_checks_markdown(
            [tuple(item.split("=", 1)) for item in args.copy_threshold],
            [tuple(item.split("=", 1)) for item in args.copy_calibration],
        )
        + (excluded_markdown(excluded) if args.excluded else "")
        + downloads_markdown(
            [tuple(item.split("=", 1)) for item in args.download_failures],
            [tuple(item.split("=", 1)) for item in args.download_excluded],
        )
    )
    if args.diagnostics:
        correlation = gain_correlation(table, pd.read_csv(args.diagnostics))
        with atomic_path(out_dir / "gain_correlation.csv") as tmp:
            correlation.to_csv(tmp, index=False, float_format="%.4f")
        report += gain_correlation_markdown(correlation)
    # The run's closing line: what the numbers above do and do not show.
    supported = conclusion(table)
    report += f"\nWhat the table supports: {supported}\n" if supported else ""
    write_text(out_dir / "summary.md", report)
    write_json(out_dir / "provenance.json", provenance(json.loads(args.settings)))
    print(report)


if __name__ == "__main__":
    run(main)
