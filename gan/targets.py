"""The project's own targets for the shipped MNIST generator (project-internal: `gancli eval` and
`evaluate_model` do not add them to their results; scripts and tests check them)."""
from __future__ import annotations

from gancli.gan.classifier import FEATURE_NETWORK_NAME as CLASSIFIER_NETWORK_NAME
from gancli.gan.errors import EvalError

MNIST_TARGETS = {"min_classifier_is": 9.0, "max_fcd_over_real": 3.0, "class_share": (0.08, 0.12)}


def mnist_targets(result: dict) -> dict:
    """Check an MNIST result against the shipped mnist-dcgan's targets: classifier IS >= 9.0, FCD <= 3x the
    real-test FCD, every digit class 10 % +- 2 %. Returns {check: {value, target, passed}, "passed": all}."""
    rows = {r["metric"]: r for r in result["scores"] if r["feature_network"] == CLASSIFIER_NETWORK_NAME}
    if "IS" not in rows or result.get("class_shares") is None:
        raise EvalError("the MNIST targets need the mnist-classifier scores; evaluate with --dataset mnist")
    is_value = rows["IS"]["generated"]["value"]
    fcd, fcd_real = rows["FCD"]["generated"]["value"], rows["FCD"]["real_test"]["value"]
    low, high = MNIST_TARGETS["class_share"]
    shares = result["class_shares"]["generated"]
    checks = {
        "classifier_is": {"value": is_value, "target": f">= {MNIST_TARGETS['min_classifier_is']}",
                          "passed": is_value >= MNIST_TARGETS["min_classifier_is"]},
        "fcd": {"value": fcd, "target": f"<= {MNIST_TARGETS['max_fcd_over_real']} x {fcd_real:.3g} (real test)",
                "passed": fcd <= MNIST_TARGETS["max_fcd_over_real"] * fcd_real},
        "class_shares": {"value": shares, "target": f"each in [{low}, {high}]",
                         "passed": all(low <= s <= high for s in shares)},
    }
    return {**checks, "passed": all(c["passed"] for c in checks.values())}
