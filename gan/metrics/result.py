"""What `gancli.evaluate` returns: the scores of one generator as dataclasses, not nested dicts read by string
keys. `to_dict()` is the JSON that `gancli eval --out` writes (eval.json); `from_dict` reads it back."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

IMAGE_SETS = ("generated", "real_test", "untrained_generator")


@dataclass
class Value:
    """One score of one image set, with the n it was taken on (FD, KID and the others depend on n)."""

    value: float
    std: float | None = None
    n: int | None = None


@dataclass
class Score:
    """One metric through one feature network: the generated images beside the floor (real test images) and the
    ceiling (an untrained generator of the same architecture)."""

    metric: str  # FID, FCD, KID, precision, recall, density, coverage, IS
    feature_network: str
    better: str  # "lower" or "higher"
    generated: Value
    real_test: Value
    untrained_generator: Value
    reference_n: int | None = None  # real images the sets were compared with
    k: int | None = None  # nearest neighbours (precision, recall, density, coverage)

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> Score:
        sets = {name: Value(**row[name]) for name in IMAGE_SETS}
        return cls(**{key: value for key, value in row.items() if key not in IMAGE_SETS}, **sets)


@dataclass
class EvalResult:
    dataset: str
    image_shape: list[int]  # [H, W, C]
    real_data: str  # what the real side is and how many images
    counts: dict[str, int]  # images per set: generated, reference, real_test, untrained_generator
    feature_networks: dict[str, dict]  # name -> description, weights and feature size
    scores: list[Score]
    class_shares: dict | None  # share of each class per image set, where a classifier fits
    memorisation: dict  # nearest-training-image check of the generated images
    settings: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    model: dict | None = None  # the model scored: path, weights hash, architecture, precision, seed, psi
    conditional: dict | None = None  # label accuracy, per-class FCD and CAS of a class-conditional MNIST model

    def score(self, metric: str, feature_network: str | None = None) -> Score:
        """The score named `metric` (of `feature_network`, when several networks give it); KeyError if none."""
        for score in self.scores:
            if score.metric == metric and feature_network in (None, score.feature_network):
                return score
        raise KeyError(f"no {metric} score" + (f" of {feature_network}" if feature_network else ""))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["scores"] = [{k: v for k, v in row.items() if v is not None or k not in ("k", "reference_n")}
                          for row in data["scores"]]
        if self.conditional is None:
            del data["conditional"]  # an unconditional model's eval.json has no such key
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalResult:
        return cls(**{**data, "scores": [Score.from_dict(row) for row in data["scores"]]})
