"""Your own landmarks (issue 35): a dataset described by a dataset.yaml, as a folder of images with point files or as
COCO keypoints, goes through prepare, training, export and predict like 300-W; bad descriptions are one line."""
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from edgekd.cli.main import main
from edgekd.core.errors import DataError
from edgekd.core.imageio import load_image, read_pts
from edgekd.core.schemes import SCHEMES, get_scheme
from edgekd.data.described import load_description, read_described
from edgekd.data.pipeline import PreparedData
from edgekd.data.readers import DATASETS, read_dataset
from runtime_helpers import SHIPPED_FLOAT32

# 5 points from the 68: the two eye centres, the nose tip, the two mouth corners (as a face aligner uses them)
FIVE = [list(range(36, 42)), list(range(42, 48)), [30], [48], [54]]
DESCRIPTION = {"name": "eyes5", "licence": "300-W faces (non-commercial research only), reduced to 5 points",
               "format": "folder", "points": 5, "flip_pairs": [[0, 1], [3, 4]], "nme_points": [0, 1],
               "point_names": ["eye_a", "eye_b", "nose", "mouth_a", "mouth_b"], "train": "train", "test": "test"}


def _five(points68: np.ndarray) -> np.ndarray:
    return np.stack([points68[idx].mean(axis=0) for idx in FIVE]).astype(np.float32)


def _small_face(sample, side: int = 160):
    """The face with context, scaled so the test images are small: (image, its 68 points)."""
    image = load_image(sample)
    pts = sample.points
    centre = (pts.min(axis=0) + pts.max(axis=0)) / 2
    half = float((pts.max(axis=0) - pts.min(axis=0)).max())
    scale = side / (2 * half)
    m = np.array([[scale, 0, side / 2 - scale * centre[0]], [0, scale, side / 2 - scale * centre[1]]], np.float64)
    small = cv2.warpAffine(image, m, (side, side), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT)
    return small, (pts @ m[:, :2].T + m[:, 2]).astype(np.float32)


@pytest.fixture(scope="module")
def faces(data_root):
    train = read_dataset("300w", data_root / "300w", "train")[:12]
    test = read_dataset("300w", data_root / "300w", "test")[:4]
    return {"train": [_small_face(s) for s in train], "test": [_small_face(s) for s in test]}


def _write_folder(root, faces, description=DESCRIPTION):
    for split, items in faces.items():
        (root / split).mkdir(parents=True)
        for k, (image, pts) in enumerate(items):
            cv2.imwrite(str(root / split / f"face{k:02d}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            (root / split / f"face{k:02d}.json").write_text(json.dumps({"points": _five(pts).tolist()}))
    (root / "dataset.yaml").write_text(yaml.safe_dump(description))
    return root


def _write_coco(root, faces):
    (root / "images").mkdir(parents=True)
    for split, items in faces.items():
        doc = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "face"}]}
        for k, (image, pts) in enumerate(items):
            name = f"{split}{k:02d}.png"
            cv2.imwrite(str(root / "images" / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            doc["images"].append({"id": k, "file_name": name, "width": image.shape[1], "height": image.shape[0]})
            kp = np.concatenate([_five(pts), np.full((5, 1), 2.0)], axis=1).ravel().tolist()
            doc["annotations"].append({"id": 100 + k, "image_id": k, "keypoints": kp, "num_keypoints": 5})
        (root / f"{split}.json").write_text(json.dumps(doc))
    (root / "dataset.yaml").write_text(yaml.safe_dump({**DESCRIPTION, "format": "coco", "train": "train.json",
                                                        "test": "test.json", "images": "images"}))
    return root


def _prepare(root, out):
    return CliRunner().invoke(main, ["data", "prepare", "--root", str(root), "--out-dir", str(out), "--input-size",
                                     "64", "--no-fit-detector"])


def test_a_five_point_folder_dataset_prepares_trains_exports_and_predicts(faces, tmp_path, monkeypatch):
    root = _write_folder(tmp_path / "eyes5", faces)
    r = _prepare(root, tmp_path / "prepared")
    assert r.exit_code == 0, r.output
    data = PreparedData(tmp_path / "prepared")
    assert data.manifest.scheme == "eyes5" and data.num_points == 5
    assert data.manifest.license == DESCRIPTION["licence"] and data.manifest.config["dataset"] == "eyes5"
    assert data.scheme.flip_permutation == (1, 0, 2, 4, 3) and data.scheme.point_names[2] == "nose"
    assert data.manifest.counts == {"train": 11, "val": 1, "test": 4}
    # the stored points are the file's points in the stored crop: the mirrored copy keeps each eye on its side
    hard = data.split("train").hard[0]
    mirrored = data.scheme.flip(hard, data.manifest.store_size)
    assert (hard[0, 0] < hard[1, 0]) == (mirrored[0, 0] < mirrored[1, 0])
    np.testing.assert_allclose(mirrored[2, 0], data.manifest.store_size - 1 - hard[2, 0], atol=1e-4)

    from edgekd.export.config import ExportConfig
    from edgekd.export.exporter import export_model
    from edgekd.training.config import TrainConfig
    from edgekd.training.train import train

    summary = train(tmp_path / "prepared", tmp_path / "run",
                    TrainConfig(stage="baseline", epochs=1, steps_per_epoch=2, batch_size=4, alpha=0.35,
                                progress=False))
    assert summary["epochs"] == 1
    export_model(ExportConfig(checkpoint=tmp_path / "run" / "baseline" / "best.h5",
                                       out=tmp_path / "eyes5_int8.tflite", mode="int8", calibration_samples=8,
                                       allow_degradation=True, progress=False))
    from edgekd.core.metadata import read

    meta = read(tmp_path / "eyes5_int8.tflite")
    assert meta.scheme == "eyes5" and meta.num_points == 5 and meta.flip_permutation == [1, 0, 2, 4, 3]
    assert meta.nme_pair == [0, 1]

    # bench scores it on the user's own test split (the description says which points and which NME pair)
    r = CliRunner().invoke(main, ["bench", str(tmp_path / "eyes5_int8.tflite"), "--root", str(root), "--crop", "gt",
                                  "--threads", "1", "--out-dir", str(tmp_path / "bench")])
    assert r.exit_code == 0, r.output
    row = json.loads((tmp_path / "bench" / "results.json").read_text())["entries"][0]
    assert row["protocol"] == "gt" and row["count"] == 4 and np.isfinite(row["nme"]), row

    # predict reads the points and their mirror map from the model file: no registered scheme needed, flip TTA too
    monkeypatch.delitem(SCHEMES, "eyes5")
    image = root / "test" / "face00.png"
    r = CliRunner().invoke(main, ["predict", str(tmp_path / "eyes5_int8.tflite"), str(image), "--out",
                                  str(tmp_path / "p.png"), "--pts", str(tmp_path / "p.json"), "--tta", "flip",
                                  "--detector", "full-range"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "p.png").is_file()
    faces_found = json.loads((tmp_path / "p.json").read_text())
    assert "5 points" in r.output and faces_found, r.output


def test_coco_keypoints_give_the_same_faces_as_the_folder(faces, tmp_path):
    folder = load_description(_write_folder(tmp_path / "f", faces) / "dataset.yaml")
    coco = load_description(_write_coco(tmp_path / "c", faces) / "dataset.yaml")
    for split in ("train", "test"):
        a, b = read_described(folder, split), read_described(coco, split)
        assert len(a) == len(b) == len(faces[split])
        for x, y in zip(a, b):
            np.testing.assert_allclose(x.points, y.points, atol=1e-4)
            assert load_image(x).shape == load_image(y).shape
    r = _prepare(tmp_path / "c", tmp_path / "prepared")
    assert r.exit_code == 0, r.output
    assert PreparedData(tmp_path / "prepared").manifest.counts["test"] == 4


@pytest.mark.parametrize("name,scheme", [("wflw", "wflw"), ("cofw", "cofw")])
def test_the_public_samples_go_through_a_description_too(data_root, tmp_path, name, scheme):
    src = data_root / "mmpose_testdata" / name
    description = {"licence": f"{name.upper()} sample (non-commercial research only)", "format": "coco",
                   "scheme": scheme, "train": str(src / f"test_{name}.json"), "images": str(src)}
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "dataset.yaml").write_text(yaml.safe_dump(description))
    r = _prepare(tmp_path / "d", tmp_path / "prepared")
    assert r.exit_code == 0, r.output
    data = PreparedData(tmp_path / "prepared")
    assert data.scheme is get_scheme(scheme) and data.manifest.counts["train"] + data.manifest.counts["val"] >= 2


def test_the_public_layouts_are_entries_of_one_registry():
    assert set(DATASETS) == {"300w", "wflw", "cofw"}
    for name, fmt in DATASETS.items():
        assert fmt.scheme is SCHEMES[name] and "non-commercial" in fmt.licence and callable(fmt.read)


def _points_file(root, k=0, split="train"):
    return root / split / f"face{k:02d}.json"


def _bad_permutation(root):
    d = {**DESCRIPTION, "flip_permutation": [1, 0, 2, 4, 4]}
    del d["flip_pairs"]
    (root / "dataset.yaml").write_text(yaml.safe_dump(d))
    return "dataset.yaml: flip_permutation: expected each index from 0 to 4 exactly once"


def _same_side_pair(root):
    (root / "dataset.yaml").write_text(yaml.safe_dump({**DESCRIPTION, "flip_pairs": [[0, 3], [1, 4]]}))
    return "dataset.yaml: flip pair [0, 3]: mirrored, point 0 lands near point 3 on only 0% of the training faces"


def _point_outside(root):
    path = _points_file(root, 3)
    pts = json.loads(path.read_text())["points"]
    pts[2] = [20.0, 400.0]  # far below the 160 px image: a wrong file, not a face cut by the edge
    path.write_text(json.dumps({"points": pts}))
    return "face03.json: points for face03.png: 1 of its 5 points lie outside the 160x160 image (first: point 2)"


def _count_differs(root):
    path = _points_file(root, 5)
    path.write_text(json.dumps({"points": json.loads(path.read_text())["points"][:4]}))
    return "face05.json: expected 5 points, found 4"


def _nme_out_of_range(root):
    (root / "dataset.yaml").write_text(yaml.safe_dump({**DESCRIPTION, "nme_points": [0, 7]}))
    return "dataset.yaml: nme_points [0, 7]: expected two different indices from 0 to 4"


def _image_without_points(root):
    _points_file(root, 7).unlink()
    return "face07.png: an image without points; expected face07.json or face07.pts beside it"


def _no_licence(root):
    d = dict(DESCRIPTION)
    del d["licence"]
    (root / "dataset.yaml").write_text(yaml.safe_dump(d))
    return "dataset.yaml: licence: expected one line"


def _unknown_key(root):
    (root / "dataset.yaml").write_text(yaml.safe_dump({**DESCRIPTION, "kpt_shape": [5, 2]}))
    return "dataset.yaml: unknown key 'kpt_shape'"


@pytest.mark.parametrize("damage", [_bad_permutation, _same_side_pair, _point_outside, _count_differs,
                                    _nme_out_of_range, _image_without_points, _no_licence, _unknown_key],
                         ids=lambda f: f.__name__.strip("_"))
def test_a_bad_description_or_point_file_is_one_line_naming_it(faces, tmp_path, damage):
    root = _write_folder(tmp_path / "eyes5", faces)
    expected = damage(root)
    r = _prepare(root, tmp_path / "prepared")
    lines = r.output.strip().splitlines()
    assert r.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), r.output
    assert expected in lines[0], lines[0]
    assert not (tmp_path / "prepared").exists()


def test_a_pts_folder_works_too(faces, tmp_path):
    root = _write_folder(tmp_path / "eyes5", faces)
    from edgekd.core.imageio import write_pts

    for path in sorted((root / "train").glob("*.json")):
        write_pts(path.with_suffix(".pts"), np.asarray(json.loads(path.read_text())["points"]))
        path.unlink()
    samples = read_described(load_description(root / "dataset.yaml"), "train")
    assert len(samples) == 12
    np.testing.assert_allclose(samples[0].points, read_pts(root / "train" / "face00.pts"), atol=1e-3)
    shutil.rmtree(root / "test")
    with pytest.raises(DataError, match="the test folder was not found"):
        read_described(load_description(root / "dataset.yaml"), "test")


SUBSET = [36, 45, 30, 48, 54]  # outer eye corners, nose tip, mouth corners: five of the 68 points


def _write_subset(root, faces, subset_of=True):
    description = {**DESCRIPTION, "name": "corners5" if subset_of else "plain5", "point_names": [], "train": "train",
                   "test": "test"}
    if subset_of:
        description["subset_of"] = {"scheme": "300w", "points": SUBSET}
    for split, items in faces.items():
        (root / split).mkdir(parents=True)
        for k, (image, pts) in enumerate(items):
            cv2.imwrite(str(root / split / f"face{k:02d}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            (root / split / f"face{k:02d}.json").write_text(json.dumps({"points": pts[SUBSET].tolist()}))
    (root / "dataset.yaml").write_text(yaml.safe_dump(description))
    return root


def test_the_shipped_student_starts_a_network_of_a_subset_of_its_points(faces, tmp_path):
    """Fine-tuning from the shipped student on your own points: a scheme that is a subset of its 68 (``subset_of``)
    starts from its weights, the landmark layer keeping those points' rows, so the new network predicts those points
    exactly as the 68-point one does; without ``subset_of`` the file is refused in one line."""
    from edgekd.models.backbones import build_network
    from edgekd.training.config import TrainConfig
    from edgekd.training.train import _init_weights, _WithPoints

    assert _prepare(_write_subset(tmp_path / "c5", faces), tmp_path / "p").exit_code == 0
    data = PreparedData(tmp_path / "p")
    assert data.scheme.subset_of == ("300w", tuple(SUBSET))
    cfg = TrainConfig(stage="baseline", head_init="default", progress=False)  # every weight comes from the file
    five = build_network(5, data.input_size, cfg.network(), None)
    _init_weights(SHIPPED_FLOAT32, five, cfg, data)
    full = build_network(68, data.input_size, cfg.network(), None)
    _init_weights(SHIPPED_FLOAT32, full, cfg, _WithPoints(data, 68))
    crops = data.split("val").images[:, 32:96, 32:96].astype(np.float32) / 255.0
    columns = [2 * i + k for i in SUBSET for k in (0, 1)]
    np.testing.assert_allclose(five.predict(crops, verbose=0), full.predict(crops, verbose=0)[:, columns], atol=1e-5)

    assert _prepare(_write_subset(tmp_path / "plain5", faces, subset_of=False), tmp_path / "q").exit_code == 0
    r = CliRunner().invoke(main, ["train", str(tmp_path / "q"), "--run-dir", str(tmp_path / "run"), "--stage",
                                  "baseline", "--init-from", str(SHIPPED_FLOAT32), "--epochs", "1"])
    lines = r.output.strip().splitlines()
    assert r.exit_code == 2 and len(lines) == 1 and "num_points 68, but the data has 5" in lines[0], r.output
