"""`gancli eval --truncation PSI` and `--truncation-sweep` (gan/metrics/truncation_sweep.py): FD, precision and recall
per psi as a table, a JSON file and a PNG plot; a bad psi or output is one line before any work."""
from __future__ import annotations

import json

import pytest
from PIL import Image
from typer.testing import CliRunner

from gancli.cli import app
from gancli.gan.errors import EvalError
from gancli.gan.metrics.truncation_sweep import parse_psis, sweep_rows


def test_psis_are_parsed_sorted_and_checked():
    assert parse_psis("1.0, 0.5,0.7") == [0.5, 0.7, 1.0]
    for bad in ("0.5,x", ""):
        with pytest.raises(EvalError):
            parse_psis(bad)


def test_the_sweep_writes_table_json_and_plot(data_root, tmp_path):
    out = tmp_path / "sweep.json"
    result = CliRunner().invoke(app, ["eval", "mnist-dcgan", "--dataset", "mnist", "--no-inception", "-n", "200",
                                      "--device", "cpu", "--data-root", str(data_root), "--truncation-sweep",
                                      "0.5,1.0", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "| 0.5 | mnist-classifier | FCD" in result.output and "| 1 | mnist-classifier | FCD" in result.output
    summary = json.loads(out.read_text())
    rows = summary["truncation_sweep"]
    assert [r["psi"] for r in rows] == [0.5, 1.0] and all(r["n"] == 200 for r in rows)
    assert [r["model"]["truncation_psi"] for r in summary["results"]] == [0.5, 1.0]
    assert rows[0]["fd"] != rows[1]["fd"] and 0 <= rows[0]["precision"] <= 1
    with Image.open(tmp_path / "sweep.png") as plot:
        assert plot.format == "PNG" and plot.size[0] > 300


def test_sweep_rows_take_each_network_s_fd_and_curves():
    score = lambda metric, value: {"metric": metric, "feature_network": "net", "generated": {"value": value, "n": 9}}
    result = {"scores": [score("FCD", 3.0), score("KID", 0.1), score("precision", 0.7), score("recall", 0.6),
                         score("density", 0.9), score("coverage", 0.5)]}
    assert sweep_rows({0.7: result}) == [{"psi": 0.7, "feature_network": "net", "fd_name": "FCD", "fd": 3.0, "n": 9,
                                          "precision": 0.7, "recall": 0.6, "density": 0.9, "coverage": 0.5}]


@pytest.mark.parametrize("args, message", [
    (["--truncation", "0"], "--truncation must be a number in (0, 1]"),
    (["--truncation", "1.5"], "--truncation must be a number in (0, 1]"),
    (["--truncation-sweep", "0.5,1.2"], "--truncation must be a number in (0, 1]"),
    (["--truncation-sweep", "0.5,a"], "--truncation-sweep takes comma-separated numbers"),
    (["--truncation-sweep", "0.5", "--out", "/proc/x/sweep.json"], "--out"),
])
def test_bad_truncation_input_is_one_line_before_any_work(tmp_path, args, message):
    result = CliRunner().invoke(app, ["eval", "mnist-dcgan", "--dataset", "mnist", "--no-inception", "-n", "100",
                                      "--device", "cpu", *args])
    assert result.exit_code == 1, result.output
    assert message in result.output and result.output.count("error:") == 1
    assert "features of" not in result.output  # nothing was scored


def test_an_out_that_is_the_plot_is_refused_before_any_work(tmp_path, monkeypatch):
    """`--out sweep.png` named the plot too (OUT with .png): the JSON was written over the plot. The two names
    must differ, however they are spelled, and this is found out before any psi is scored."""
    import gancli.gan.metrics.evaluate as evaluate
    from gancli.gan.metrics.truncation_sweep import truncation_sweep

    monkeypatch.setattr(evaluate, "evaluate_model", lambda *a, **k: pytest.fail("a psi was scored"))
    result = CliRunner().invoke(app, ["eval", "mnist-dcgan", "--dataset", "mnist", "--no-inception", "-n", "100",
                                      "--device", "cpu", "--truncation-sweep", "0.5,1.0", "--out",
                                      str(tmp_path / "sweep.png")])
    assert result.exit_code == 1, result.output
    assert result.output.startswith("error: --out") and result.output.count("\n") == 1 and "sweep.json" in result.output
    with pytest.raises(EvalError, match="the plot"):
        truncation_sweep("mnist-dcgan", "mnist", "0.5", 100, plot=tmp_path / "s.png", out=f"{tmp_path}/./s.png")
    assert list(tmp_path.iterdir()) == []
