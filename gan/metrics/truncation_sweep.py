"""`gancli eval --truncation-sweep 0.5,0.7,1.0`: one evaluation per truncation psi, then FD, precision and recall
per psi as a table and a PNG plot, the curve StyleGAN's and BigGAN's papers draw (fidelity against variety).

Each psi is a full `evaluate_model` run on images 0..n-1 of the same seed; the real statistics and the untrained
ceiling come from the feature cache after the first, so each further psi costs the generated images' features.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from gancli.gan.errors import EvalError

CURVE_METRICS = ("precision", "recall", "density", "coverage")


def parse_psis(text: str | Sequence[float]) -> list[float]:
    """"0.5,0.7,1.0" (or a list of numbers) -> sorted distinct psi values, each checked to lie in (0, 1]."""
    from gancli.runtime.generate import check_truncation

    items = [p.strip() for p in text.split(",") if p.strip()] if isinstance(text, str) else list(text)
    try:
        psis = sorted({float(p) for p in items})
    except (TypeError, ValueError):
        raise EvalError(f"--truncation-sweep takes comma-separated numbers in (0, 1] such as 0.5,0.7,1.0, "
                        f"not {text!r}") from None
    if not psis:
        raise EvalError("--truncation-sweep needs at least one psi, e.g. 0.5,0.7,1.0")
    for psi in psis:
        check_truncation(psi)
    return psis


def sweep_rows(results: dict[float, dict]) -> list[dict]:
    """One row per (psi, feature network): {psi, feature_network, fd_name, fd, precision, ..., n} of "generated"."""
    rows = []
    for psi, result in results.items():
        by_network: dict[str, dict] = {}
        for score in result["scores"]:
            row = by_network.setdefault(score["feature_network"], {"psi": psi,
                                                                    "feature_network": score["feature_network"]})
            if score["metric"] in CURVE_METRICS:
                row[score["metric"]] = score["generated"]["value"]
            elif score["metric"] in ("FID", "FCD"):
                row.update(fd_name=score["metric"], fd=score["generated"]["value"], n=score["generated"]["n"])
        rows += [r for r in by_network.values() if "fd" in r]
    return rows


def sweep_table(rows: list[dict]) -> list[str]:
    """The rows as a Markdown table, one line per (psi, feature network)."""
    lines = ["| psi | feature network | FD | precision | recall | density | coverage | n |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r['psi']:g} | {r['feature_network']} | {r['fd_name']} {r['fd']:.4g} | {r['precision']:.4f} | "
              f"{r['recall']:.4f} | {r['density']:.4f} | {r['coverage']:.4f} | {r['n']:,} |" for r in rows]
    return lines


def plot_sweep(rows: list[dict], path: str | Path, title: str) -> None:
    """FD (left axis) and precision / recall (right axis) against psi, one panel per feature network."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    networks = list(dict.fromkeys(r["feature_network"] for r in rows))
    fig, axes = plt.subplots(1, len(networks), figsize=(5.5 * len(networks), 4), squeeze=False)
    for ax, network in zip(axes[0], networks):
        mine = [r for r in rows if r["feature_network"] == network]
        psis = [r["psi"] for r in mine]
        ax.plot(psis, [r["fd"] for r in mine], "o-", color="black", label=mine[0]["fd_name"])
        ax.set_xlabel("truncation psi")
        ax.set_ylabel(f"{mine[0]['fd_name']} (lower is better)")
        ax.set_title(f"{title}\n{network}", fontsize=9)
        right = ax.twinx()
        for metric, colour in (("precision", "tab:blue"), ("recall", "tab:orange")):
            right.plot(psis, [r[metric] for r in mine], "s--", color=colour, label=metric)
        right.set_ylim(0, 1)
        right.set_ylabel("precision, recall (higher is better)")
        lines = ax.get_legend_handles_labels()
        more = right.get_legend_handles_labels()
        ax.legend(lines[0] + more[0], lines[1] + more[1], loc="lower center", fontsize=8)
    fig.tight_layout()
    from gancli.runtime.files import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def truncation_sweep(model: str | Path, dataset: str, psis: str | Sequence[float], n: int = 10_000, *,
                     plot: str | Path | None = "truncation-sweep.png", out: str | Path | None = None,
                     log: Callable[[str], None] | None = None, **options) -> dict:
    """Evaluate `model` at each psi (options as evaluate_model's: seed, data_root, device, inception, ...).

    Returns {"truncation_sweep": rows (sweep_rows), "table": them as Markdown lines, "plot": the PNG's path or
    None, "results": every psi's full evaluation}; also written to `out` as JSON when given. Every psi, `out` and
    `plot` (two different files) are checked before any work.
    """
    from gancli.gan.metrics.evaluate import evaluate_model
    from gancli.runtime.files import write_text_atomic

    from gancli.gan.metrics.eval_checks import check_out_file

    psis = parse_psis(psis)
    if out is not None and plot is not None and os.path.realpath(out) == os.path.realpath(plot):
        raise EvalError(f"--out {out} is also the plot's file, so the JSON would be written over the plot; give --out "
                        f"a .json name, such as {Path(out).with_suffix('.json')}")
    for target in (out, plot):  # both are written after every evaluation: found out now if they cannot be
        if target is not None:
            check_out_file(Path(target))
    results = {}
    for psi in psis:
        if log:
            log(f"truncation psi {psi:g}")
        results[psi] = evaluate_model(model, dataset, n, truncation=psi, log=log, **options)
    rows = sweep_rows(results)
    if plot is not None:
        model_name = Path(str(model)).name
        plot_sweep(rows, plot, f"{model_name}: {n:,} images per psi against {dataset}")
    summary = {"truncation_sweep": rows, "table": sweep_table(rows), "plot": None if plot is None else str(plot),
               "results": list(results.values())}
    if out is not None:
        write_text_atomic(out, json.dumps(summary, indent=2))
    return summary
