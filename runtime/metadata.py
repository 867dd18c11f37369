"""The metadata contract between `export/` (which writes it) and `runtime/` (which reads it).

Stored as one JSON string under the key `gancli` in ONNX `metadata_props` and in TorchScript
`_extra_files` (yolov5's custom_metadata_map, parsed as JSON, never eval'd), so an exported file
needs no other file beside it.

A class-conditional generator has a second input, `label` int64 [batch] (indices into
`class_names`), and its metadata lists the class names (format version 2). An unconditional one
keeps the contract of format version 1 exactly: one input `z`, no `class_names` key.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from gancli.runtime.errors import GenerateError
from gancli.runtime.jsonfile import check_format

METADATA_KEY = "gancli"
METADATA_FORMAT_VERSION = 4  # the newest this version reads
UNCONDITIONAL_FORMAT_VERSION = 1  # an unconditional model of gancli <= 0.2
CONDITIONAL_FORMAT_VERSION = 2  # adds class_names and the `label` input
WIDTH_FORMAT_VERSION = 3  # adds the network's width, which eval's untrained ceiling needs
DEPTH_FORMAT_VERSION = 4  # adds G's convolutions per resolution, which the ceiling needs too: what gancli writes now
INPUT_NAME = "z"
LABEL_NAME = "label"  # conditional models only: int64 [batch], indices into class_names
OUTPUT_NAME = "images"

# What the single output holds.
OUTPUT_FLOAT_NCHW = "float_nchw"  # float32 [B, C, H, W] in value_range, as G computes it
OUTPUT_UINT8_NHWC = "uint8_nhwc"  # uint8 [B, H, W, C] in [0, 255]: bytes an encoder takes as they are
OUTPUT_KINDS = (OUTPUT_FLOAT_NCHW, OUTPUT_UINT8_NHWC)


# what each field must be (class_names' items are made str on reading); sizes must also be positive
FIELD_TYPES = {"latent_dim": int, "channels": int, "img_size": int, "output_kind": str, "dataset": str, "arch": str,
               "precision": str, "gancli_version": str, "weights_sha256": str, "format_version": int}
POSITIVE = ("latent_dim", "channels", "img_size", "format_version")


class MetadataError(GenerateError):
    """A model file carries no gancli metadata, or metadata this version cannot read."""


@dataclass(frozen=True)
class ModelMetadata:
    latent_dim: int
    channels: int
    img_size: int
    output_kind: str
    value_range: tuple[float, float]
    dataset: str
    arch: str
    precision: str  # weights' precision inside the graph ("fp32", "fp16"); I/O stays float32 z
    gancli_version: str
    weights_sha256: str
    format_version: int = UNCONDITIONAL_FORMAT_VERSION
    # a class-conditional model: label i means class_names[i]; () when unconditional (older files have no key)
    class_names: tuple[str, ...] = ()
    width: int | None = None  # dcgan: channels at the finest resolution (None: a file of gancli <= 0.2)
    g_depth: int | None = None  # dcgan: G's convolutions per resolution (None: a file of format <= 3, which had 1)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image, whatever the output layout."""
        return (self.channels, self.img_size, self.img_size)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def conditional(self) -> bool:
        return bool(self.class_names)

    @property
    def input_names(self) -> list[str]:
        """The graph's inputs, in order: `z`, then `label` when conditional."""
        return [INPUT_NAME, LABEL_NAME] if self.conditional else [INPUT_NAME]

    def to_json(self) -> str:
        data = asdict(self)
        if self.conditional:
            data["class_names"] = list(self.class_names)
        else:
            del data["class_names"]  # an unconditional model has no class_names key
        for name in ("width", "g_depth"):  # older formats have no key
            if data[name] is None:
                del data[name]
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str = "model") -> "ModelMetadata":
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise TypeError(f"a JSON {type(data).__name__}, not an object")
            data["value_range"] = tuple(data["value_range"])
            if "class_names" in data:
                data["class_names"] = tuple(str(name) for name in data["class_names"])
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise MetadataError(f"{source}: gancli metadata is not valid JSON of the expected form ({e})") from e
        check_format(data, source, None, METADATA_FORMAT_VERSION, MetadataError, "re-export the model",
                     "gancli model metadata")
        try:
            meta = cls(**data)
        except TypeError as e:
            raise MetadataError(f"{source}: gancli metadata has missing or unknown fields ({e}); re-export the model") from e
        for name, kinds in FIELD_TYPES.items():
            value = getattr(meta, name)
            if not isinstance(value, kinds) or isinstance(value, bool) or (name in POSITIVE and value <= 0):
                raise MetadataError(f"{source}: gancli metadata field {name!r} is {value!r}, not a valid value; "
                                    f"re-export the model")
        if len(meta.value_range) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                  for v in meta.value_range):
            raise MetadataError(f"{source}: gancli metadata field 'value_range' is {list(meta.value_range)!r}, not two "
                                f"numbers; re-export the model")
        if meta.output_kind not in OUTPUT_KINDS:
            raise MetadataError(f"{source}: unknown output kind {meta.output_kind!r}; re-export the model")
        if len(set(meta.class_names)) != len(meta.class_names) or not all(meta.class_names):
            raise MetadataError(f"{source}: the class names in its metadata are empty or repeated; re-export the model")
        return meta

    @classmethod
    def from_props(cls, props: dict[str, str], source: str = "model") -> "ModelMetadata":
        """Read from ONNX custom_metadata_map / TorchScript extra files."""
        if METADATA_KEY not in props:
            raise MetadataError(f"{source} has no gancli metadata; export it with `gancli export`")
        return cls.from_json(props[METADATA_KEY], source)
