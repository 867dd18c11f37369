"""`gancli eval`'s results as the command prints them: rich tables and lines, for the CLI to print (so that
the CLI stays a thin layer over the API, and the layout lives beside the results it shows)."""
from __future__ import annotations

from rich.console import RenderableType
from rich.table import Table

from gancli.gan.metrics.result import EvalResult


def eval_report(result: EvalResult) -> list[RenderableType]:
    """An EvalResult as what `gancli eval` prints: a table of each score beside its floor and ceiling, with the
    n of each, then the digit shares, the conditional scores, the memorisation check and the notes."""
    parts: list[RenderableType] = []
    table = Table(title=f"{result.counts['generated']:,} generated vs {result.real_data}")
    for column in ("metric", "feature network", "generated", "floor: real test", "ceiling: untrained G"):
        table.add_column(column, justify="right" if column[0] in "gfc" else "left")
    for score in result.scores:
        cells = [f"{v.value:.4g}" + (f" ± {v.std:.2g}" if v.std is not None else "") + (f" (n={v.n:,})" if v.n else "")
                 for v in (score.generated, score.real_test, score.untrained_generator)]
        network = score.feature_network + (f" (ref. n={score.reference_n:,})" if score.reference_n else "")
        table.add_row(score.metric, network, *cells)
    if result.scores:
        parts.append(table)
    if result.class_shares is not None:
        shares = "  ".join(f"{d}:{s:.1%}" for d, s in enumerate(result.class_shares["generated"]))
        parts.append(f"digit shares: {shares}")
    if result.conditional:
        parts += conditional_report(result.conditional)
    memo = result.memorisation
    parts.append(f"memorisation: {memo['num_flagged']} near-copies of training images among {memo['num_checked']} "
                 f"generated (nearest-training-image distance / typical: median {memo['median_ratio']:.2f}, "
                 f"min {memo['min_ratio']:.2f}; real images: min {memo['real']['min_ratio']:.2f}; "
                 f"flagged below {memo['threshold_ratio']})")
    parts += [f"[yellow]note:[/yellow] {note}" for note in result.notes]
    return parts


def number(value: float | None, spec: str) -> str:
    """A score, or a dash where there was too little to compute it."""
    return "-" if value is None else format(value, spec)


def conditional_report(scores: dict) -> list[RenderableType]:
    """A conditional MNIST model's scores (gan/metrics/conditional.py) beside their real-data references."""
    accuracy, fcd, cas = scores["label_accuracy"], scores["fcd_per_class"], scores["cas"]
    table = Table(title=f"class-conditional: {sum(scores['images_per_class']):,} images of {len(scores['class_names'])} "
                        f"classes, judged by the {scores['feature_network']}")
    for column in ("metric", "generated", "reference"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    table.add_row("label accuracy", f"{accuracy['generated']:.2%}", f"{accuracy['real_test']:.2%} (real test)")
    table.add_row("FCD per class, mean", number(fcd["generated"]["mean"], ".4g"),
                  f"{number(fcd['real_test']['mean'], '.4g')} (real test)")
    table.add_row(f"CAS ({cas['train_images']:,} images, {cas['epochs']} epochs)", f"{cas['generated']:.2%}",
                  f"{cas['real_train']:.2%} (trained on real)")
    rows = zip(scores["class_names"], accuracy["per_class"]["generated"], fcd["generated"]["per_class"])
    per_class = "  ".join(f"{name}: {number(acc, '.1%')} / {number(dist, '.3g')}" for name, acc, dist in rows)
    return [table, f"per class (label accuracy / FCD): {per_class}"]
