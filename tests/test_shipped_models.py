"""The models shipped in models/ work out of the box: a card beside each, metadata inside, a plausible face shape
on a sample image that is not in any training set (scikit-image's astronaut), and the int8 size budget."""
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from edgekd.runtime import FaceDetector, LandmarkModel, Predictor
from edgekd.runtime.predictor import sample_face
from runtime_helpers import SHIPPED_FLOAT32

SHIPPED = sorted((Path(__file__).resolve().parents[1] / "models").rglob("*.tflite"))


def test_models_folder_ships_float_and_int8():
    assert any("int8" in p.name for p in SHIPPED) and any("float32" in p.name for p in SHIPPED)


@pytest.fixture(scope="module")
def astronaut_faces():
    image = sample_face()
    with FaceDetector() as detector:
        return image, detector.detect(image)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_model_runs_on_a_sample_face(path, astronaut_faces):
    card = json.loads(path.with_name(path.stem + ".card.json").read_text())
    assert path.with_name(path.stem + ".card.md").is_file() and card["model"] == path.name
    assert card["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()  # the card describes this very file
    image, detections = astronaut_faces
    assert len(detections) == 1
    with LandmarkModel(path) as model:
        assert (model.scheme, model.num_points) == ("300w", 68)
        if "int8" in path.name:
            assert model.info.quantization.startswith("int8") and path.stat().st_size <= 3.5e6
        face = Predictor(model).predict_detection(image, detections[0])
    p = face.points
    x0, y0, w, h = detections[0].box
    inside_x = (p[:, 0] > x0 - 0.3 * w) & (p[:, 0] < x0 + 1.3 * w)
    inside_y = (p[:, 1] > y0 - 0.5 * h) & (p[:, 1] < y0 + 1.3 * h)
    assert (inside_x & inside_y).all()
    # 300-W order: brows 17-26 above eyes 36-47 above nose tip 30 above mouth 48-67 above chin 8;
    # the subject's right eye (36-41) is on the image's left
    brows, eyes, mouth = p[17:27, 1].mean(), p[36:48, 1].mean(), p[48:68, 1].mean()
    assert brows < eyes < p[30, 1] < mouth < p[8, 1]
    assert p[36:42, 0].mean() < p[42:48, 0].mean()
    # the eye-corner distance is a sensible fraction of the detected box
    assert 0.25 * w < np.linalg.norm(p[45] - p[36]) < 0.8 * w


def test_shipped_float32_rebuilds_into_a_trainable_network():
    """What `edgekd train --init-from models/300w/kd_student_float32.tflite` starts from: the shipped file rebuilds into
    the student network (MobileNetV2 of the width its card records, GAP head unless the file has the spatial one,
    the metadata's input size), matching the file's outputs; BatchNorm statistics come from any crops here
    (inference mode does not depend on them)."""
    from edgekd.training import tflite_weights
    from edgekd.core.metadata import read
    from edgekd.models.backbones import NetworkConfig, build_network

    path = SHIPPED_FLOAT32
    if not path.is_file():
        pytest.skip("no float32 model shipped")
    alpha = json.loads(path.with_name(path.stem + ".card.json").read_text())["checkpoint_info"]["alpha"]
    meta = read(path)
    head = "spatial" if tflite_weights.has_spatial_head(path) else "gap"
    size = meta.crop.input_size
    net = build_network(meta.num_points, size, NetworkConfig(alpha=alpha, head=head, head_init="default"))
    images = np.random.default_rng(0).random((8, size, size, 3), np.float32)
    done = tflite_weights.load_into(net, path, images, batch=8)
    assert done["batchnorms"] > 50 and done["max_output_diff"] < 1e-4


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_model_is_what_the_default_recipe_makes(path):
    """Provenance: each shipped file's card names the package's default recipe file as it is now (its sha256), with
    no override, and the plain control's validation NME; so `edgekd train PREPARED --run-dir R` is the command
    that made it."""
    from edgekd.recipes import recipe as recipes

    training = json.loads(path.with_name(path.stem + ".card.json").read_text())["training"]
    default = recipes.load("default")
    assert training["recipe_file"] == "edgekd/recipes/default.yaml" and training["overrides"] == []
    assert training["recipe_sha256"] == default.sha256 and not training["control"]
    assert set(training["stages"]) == {s.name for s in default.stages if s.kind != "export"}
    assert training["plain_control_val_nme"]["student-control"] > 0
