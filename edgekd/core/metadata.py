"""The metadata every exported .tflite carries, so runtimes read the crop and scheme from the model file itself.

Stored as UTF-8 JSON in the flatbuffer's metadata list under the name ``edgekd`` (a buffer the interpreter ignores).
Python reads it with ai-edge-litert's flatbuffer schema (no TensorFlow needed); the Android app parses the same
entry (android_demo/.../TfliteMetadata.java). ``ModelMetadata`` below lists the fields for other runtimes.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from edgekd.core.crop import CropSpec
from edgekd.core.errors import ModelError

METADATA_NAME = "edgekd"
FORMAT = "edgekd-model/1"


@dataclass
class ModelMetadata:
    scheme: str  # "300w" | "wflw" | "cofw"
    num_points: int
    flip_permutation: list[int]
    nme_pair: list[int]
    crop: CropSpec
    # Input: RGB, float value = pixel / 255 ("range" [0, 1]); int8/uint8 inputs use the tensor's own
    # quantization (scale, zero_point) on top of that float value.
    color_order: str = "RGB"
    input_range: tuple[float, float] = (0.0, 1.0)
    # Output: (1, 2N) as x0, y0, x1, y1, ...; crop pixel = (value + 0.5) * input_size.
    output_layout: str = "x0,y0,x1,y1,...; crop_px = (v + 0.5) * input_size"
    quantization: str = "float32"  # float32 | float16 | dynamic | int8-ptq | int8-qat
    training_data: str = ""
    data_license: str = ""
    edgekd_version: str = ""
    extra: dict = field(default_factory=dict)
    format: str = FORMAT

    def to_json(self) -> str:
        d = asdict(self)
        d["crop"] = self.crop.to_dict()
        return json.dumps(d, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str = "<metadata>") -> "ModelMetadata":
        try:
            d = json.loads(text)
            if d.get("format") != FORMAT:
                raise ModelError(f"{source}: metadata format {d.get('format')!r}, expected {FORMAT!r}")
            d["crop"] = CropSpec.from_dict(d["crop"])
            d["input_range"] = tuple(d.get("input_range", (0.0, 1.0)))
            known = set(cls.__dataclass_fields__)
            return cls(**{k: v for k, v in d.items() if k in known})
        except (ValueError, KeyError, TypeError) as e:
            raise ModelError(f"{source}: unreadable edgekd metadata ({e})") from None


def embed(tflite: bytes, meta: ModelMetadata) -> bytes:
    """Return the model bytes with ``meta`` stored as the ``edgekd`` metadata entry (replacing an old one)."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(tflite), 0)
    model.buffers = list(model.buffers or [])
    buf = schema.BufferT()
    buf.data = list(meta.to_json().encode("utf-8"))
    old = [m for m in (model.metadata or []) if _name(m.name) == METADATA_NAME]
    if old:  # replaced in place: a second embed leaves no orphaned copy of the old metadata in the file
        model.buffers[old[0].buffer] = buf
        model.metadata = [m for m in model.metadata if _name(m.name) != METADATA_NAME or m is old[0]]
        return _pack(model, len(tflite))
    model.buffers.append(buf)
    entry = schema.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = len(model.buffers) - 1
    model.metadata = list(model.metadata or []) + [entry]
    return _pack(model, len(tflite))


def _pack(model, size: int) -> bytes:
    import flatbuffers

    builder = flatbuffers.Builder(size + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def read(path: str | Path) -> ModelMetadata:
    """Metadata of a .tflite file; a clear error when the file is not an edgekd export."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ModelError(f"{path}: no such model file") from None
    except OSError as e:  # a folder, no permission
        raise ModelError(f"{path}: cannot be read ({e.strerror or type(e).__name__})") from None
    return read_bytes(data, str(path))


def read_bytes(data: bytes, source: str = "<model>") -> ModelMetadata:
    """Metadata of .tflite bytes (``source`` names them in errors)."""
    from ai_edge_litert import schema_py_generated as schema

    try:
        model = schema.Model.GetRootAs(data, 0)
        for i in range(model.MetadataLength()):
            m = model.Metadata(i)
            if _name(m.Name()) == METADATA_NAME:
                raw = model.Buffers(m.Buffer()).DataAsNumpy()
                return ModelMetadata.from_json(bytes(raw).decode("utf-8"), source)
    except ModelError:
        raise
    except Exception as e:  # a truncated or non-TFLite file fails deep inside the flatbuffer reader
        raise ModelError(f"{source}: not a readable .tflite file ({type(e).__name__})") from None
    raise ModelError(f"{source}: no edgekd metadata; export the model with `edgekd export`")


def with_detector_mapping(tflite: bytes, crop: CropSpec, source: str = "<model>") -> tuple[bytes, ModelMetadata]:
    """The same network with ``crop``'s detector mapping in its metadata (e.g. a prepared folder refitted with
    keypoints): the mapping only says where a detector's box puts the crop, so the weights stay as they are.
    Refused unless input size and margin, which define the network's coordinates, are the model's own."""
    meta = read_bytes(tflite, source)
    if (crop.input_size, crop.margin) != (meta.crop.input_size, meta.crop.margin):
        raise ModelError(f"{source}: crop input {meta.crop.input_size} px, margin {meta.crop.margin}; the new "
                         f"mapping is for input {crop.input_size} px, margin {crop.margin}")
    meta = replace(meta, crop=replace(meta.crop, detector_offset=crop.detector_offset,
                                      detector_scale=crop.detector_scale,
                                      detector_keypoint_weights=crop.detector_keypoint_weights))
    return embed(tflite, meta), meta


def _name(n) -> str:
    return n.decode() if isinstance(n, bytes) else (n or "")
