"""Which diagnostic of the added images tracks the gain: Spearman's rank correlation, over the
methods, between each column of diagnostics.csv and the method's Δ top-1 over the baseline.
Shared by ``augbench.aggregate`` (the table) and ``augbench.figures`` (a plot per diagnostic)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats


def diagnostic_columns(diagnostics: pd.DataFrame) -> list[str]:
    """The diagnostics of diagnostics.csv (every numeric column but the count of images added)."""
    return [
        column
        for column in diagnostics.columns
        if column not in ("method", "n_added") and pd.api.types.is_numeric_dtype(diagnostics[column])
    ]


def gain_correlation(summary: pd.DataFrame, diagnostics: pd.DataFrame) -> pd.DataFrame:
    """Per diagnostic, Spearman's rank correlation over methods between it and the method's Δ top-1
    over the baseline (``vs_baseline``), with the methods that have both (``n_methods``) and the
    two-sided p-value; rho is NaN under three methods or where either side is constant."""
    gains = summary.set_index("method").vs_baseline
    rows = []
    for column in diagnostic_columns(diagnostics):
        pairs = pd.DataFrame({"value": diagnostics.set_index("method")[column], "gain": gains}).dropna()
        rho = p_value = np.nan
        if len(pairs) >= 3 and pairs.value.nunique() > 1 and pairs.gain.nunique() > 1:
            rho, p_value = stats.spearmanr(pairs.value, pairs.gain)
        rows.append(
            {"diagnostic": column, "spearman_rho": float(rho), "p_value": float(p_value), "n_methods": len(pairs)}
        )
    return pd.DataFrame(rows, columns=["diagnostic", "spearman_rho", "p_value", "n_methods"])


def gain_correlation_markdown(correlation: pd.DataFrame) -> str:
    if correlation.empty:
        return ""
    lines = ["| diagnostic | Spearman ρ with Δ top-1 | p | methods |", "|---|---|---|---|"]
    for row in correlation.itertuples():
        known = not np.isnan(row.spearman_rho)
        rho, p_value = (f"{row.spearman_rho:+.2f}", f"{row.p_value:.3f}") if known else ("n/a", "")
        lines.append(f"| {row.diagnostic} | {rho} | {p_value} | {row.n_methods} |")
    return (
        "\nWhich diagnostic of the added images (diagnostics.csv) tracks the gain: Spearman's rank correlation, "
        "over the methods, between the diagnostic and the method's Δ top-1 over the baseline (mean over shared "
        "seeds; n/a under three methods or where a side is constant). With a handful of methods only a "
        "strong correlation is distinguishable from chance (p).\n\n" + "\n".join(lines) + "\n"
    )
