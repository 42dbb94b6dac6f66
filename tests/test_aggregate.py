import json

import pandas as pd
import pytest

from augbench import aggregate


def _metrics(tmp_path, method, seed, top1):
    path = tmp_path / "metrics" / method / f"seed{seed}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"top1": top1}))
    return str(path)


def test_summary_has_mean_std_and_counts(tmp_path):
    paths = [
        _metrics(tmp_path, "baseline", 0, 80.0),
        _metrics(tmp_path, "baseline", 1, 82.0),
        _metrics(tmp_path, "retrieve_text", 0, 90.0),
    ]
    table = aggregate.summarise(paths, {"baseline": "real", "retrieve_text": "retrieve"}, {"retrieve_text": 10.0})
    rows = table.set_index("method")
    assert list(table.columns) == aggregate.COLUMNS
    assert rows.loc["baseline", "top1_mean"] == pytest.approx(81.0)
    assert rows.loc["baseline", "top1_std"] == pytest.approx(1.41421356)
    assert rows.loc["baseline", "n_seeds"] == 2
    assert rows.loc["retrieve_text", "top1_std"] == 0.0
    assert rows.loc["retrieve_text", "n_added_per_class"] == 10.0
    assert rows.loc["baseline", "n_added_per_class"] == 0.0
    markdown = aggregate.to_markdown(table)
    assert "| baseline | real | 2 | 81.00 | 1.41 | 0 |" in markdown


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
