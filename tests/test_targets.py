"""gancli.gan.targets: the shipped MNIST generator's targets pass and fail where their bounds say."""
from __future__ import annotations

import pytest

from gancli.gan.errors import EvalError
from gancli.gan.targets import mnist_targets


def result_with(is_value: float, fcd: float, fcd_real: float, shares: list[float]) -> dict:
    return {
        "scores": [
            {"metric": "FCD", "feature_network": "mnist-classifier", "generated": {"value": fcd},
             "real_test": {"value": fcd_real}},
            {"metric": "IS", "feature_network": "mnist-classifier", "generated": {"value": is_value}},
        ],
        "class_shares": {"feature_network": "mnist-classifier", "generated": shares},
    }


def test_a_result_within_every_target_passes():
    checks = mnist_targets(result_with(9.5, 2.0, 1.0, [0.1] * 10))
    assert set(checks) == {"classifier_is", "fcd", "class_shares", "passed"}
    assert checks["passed"] and all(checks[k]["passed"] for k in ("classifier_is", "fcd", "class_shares"))


@pytest.mark.parametrize("is_value, fcd, shares, failed", [
    (8.9, 2.0, [0.1] * 10, "classifier_is"),
    (9.5, 3.1, [0.1] * 10, "fcd"),
    (9.5, 2.0, [0.13] + [0.87 / 9] * 9, "class_shares"),
])
def test_each_target_fails_on_its_own(is_value, fcd, shares, failed):
    checks = mnist_targets(result_with(is_value, fcd, 1.0, shares))
    assert not checks["passed"]
    assert [k for k in ("classifier_is", "fcd", "class_shares") if not checks[k]["passed"]] == [failed]


def test_a_result_without_the_classifier_is_refused():
    with pytest.raises(EvalError, match="need the mnist-classifier scores"):
        mnist_targets({"scores": [], "class_shares": None})
