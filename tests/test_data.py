"""Data layer on real files: readers, crops, flips, ASM, prepare, pipeline, augmentation."""
from __future__ import annotations

import json
import logging

import cv2
import h5py
import numpy as np
import pytest
from scipy.io import savemat

from edgekd.data.asm import ActiveShapeModel
from edgekd.data.augment import AugmentConfig, augment_sample, photometric
from edgekd.core.crop import CropSpec, invert, transform_points
from edgekd.data.prepare import PrepareConfig, prepare
from edgekd.core.imageio import load_image, read_pts, write_pts
from edgekd.data.readers import read_cofw_mat, read_dataset, read_wflw_list
from edgekd.core.errors import DataError, EdgekdError
from edgekd.core.schemes import SCHEMES, get_scheme


# --- readers -----------------------------------------------------------------------------------------------------
def test_300w_reader_counts_real_data(data_root):
    train = read_dataset("300w", data_root / "300w", "train")
    test = read_dataset("300w", data_root / "300w", "test")
    assert len(train) == 1675 and len(test) == 554
    assert all(s.points.shape == (68, 2) for s in train[:50])
    assert all(s.tags == ("common", "full") for s in test)
    img = load_image(train[0])
    assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8
    # 0-based: points lie inside the image
    h, w = img.shape[:2]
    assert train[0].points.min() >= 0 and train[0].points[:, 0].max() < w and train[0].points[:, 1].max() < h


def test_pts_with_and_without_header_are_equal(data_root, tmp_path):
    src = sorted((data_root / "300w" / "helen" / "trainset").glob("*.pts"))[0]
    with_header = read_pts(src, 68)
    bare = tmp_path / "bare.pts"
    write_pts(bare, with_header, header=False)
    assert "version" not in bare.read_text()
    np.testing.assert_allclose(read_pts(bare, 68), with_header, atol=1e-3)
    # 1-based on disk, 0-based in memory
    first = src.read_text().splitlines()[3].split()
    assert with_header[0, 0] == pytest.approx(float(first[0]) - 1, abs=1e-4)


def test_truncated_pts_is_a_clear_error(data_root, tmp_path):
    src = sorted((data_root / "300w" / "lfpw" / "trainset").glob("*.pts"))[0]
    lines = src.read_text().splitlines()
    bad = tmp_path / "face.pts"
    bad.write_text("\n".join(lines[:-2] + ["}"]) + "\n")  # drops the 68th point, header still says 68
    with pytest.raises(DataError, match=r"face\.pts.*68.*67"):
        read_pts(bad, 68)
    bare = tmp_path / "bare.pts"
    write_pts(bare, read_pts(src)[:67], header=False)
    with pytest.raises(DataError, match=r"bare\.pts: expected 68 points, found 67"):
        read_pts(bare, 68)
    (tmp_path / "junk.pts").write_text("1.0 2.0\nnot a point\n")
    with pytest.raises(DataError, match="junk.pts: malformed point line"):
        read_pts(tmp_path / "junk.pts")


def test_missing_and_corrupt_images_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="nothere.jpg: image file not found"):
        load_image(tmp_path / "nothere.jpg")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(DataError, match="broken.jpg: not a readable image"):
        load_image(tmp_path / "broken.jpg")


def test_300w_folder_without_annotations(tmp_path):
    (tmp_path / "lfpw" / "trainset").mkdir(parents=True)
    with pytest.raises(DataError, match="no 300-W train annotations"):
        read_dataset("300w", tmp_path, "train")


def _mmpose(data_root, name):
    d = json.loads((data_root / "mmpose_testdata" / name / f"test_{name}.json").read_text())
    images = {im["id"]: im for im in d["images"]}
    return [(images[a["image_id"]], np.asarray(a["keypoints"], np.float32).reshape(-1, 3)[:, :2], a["bbox"])
            for a in d["annotations"]]


def test_wflw_list_reader_on_rewritten_real_sample(data_root, tmp_path):
    faces = _mmpose(data_root, "wflw")
    lines = []
    for i, (im, pts, (x, y, w, h)) in enumerate(faces):
        flags = [i % 2, 0, 1, 0, 0, 1]
        lines.append(" ".join(f"{v:.3f}" for v in pts.ravel()) + f" {x:.0f} {y:.0f} {x + w:.0f} {y + h:.0f} "
                     + " ".join(map(str, flags)) + f" {im['file_name']}")
    lst = tmp_path / "list_98pt_rect_attr_test.txt"
    lst.write_text("\n".join(lines) + "\n")
    samples = read_wflw_list(lst, data_root / "mmpose_testdata" / "wflw")
    assert len(samples) == len(faces)
    for s, (im, pts, _) in zip(samples, faces):
        np.testing.assert_allclose(s.points, pts, atol=1e-3)
        assert load_image(s).shape[:2] == (im["height"], im["width"])
    assert samples[0].attrs["illumination"] and "blur" in samples[0].tags and "full" in samples[0].tags
    assert samples[1].attrs["pose"] and not samples[0].attrs["pose"]
    lst.write_text(lines[0].rsplit(" ", 2)[0] + "\n")  # a line cut short
    with pytest.raises(DataError, match=r"list_98pt_rect_attr_test.txt:1: expected 207 fields"):
        read_wflw_list(lst, tmp_path)


def _cofw_arrays(data_root):
    faces = _mmpose(data_root, "cofw")
    images = [load_image(data_root / "mmpose_testdata" / "cofw" / im["file_name"]) for im, _, _ in faces]
    phis = np.stack([np.concatenate([p[:, 0] + 1, p[:, 1] + 1, np.zeros(29)]) for _, p, _ in faces])  # 1-based
    boxes = np.array([b for _, _, b in faces], np.float64) + [1, 1, 0, 0]
    return faces, images, phis, boxes


def test_cofw_reader_matlab_v5(data_root, tmp_path):
    faces, images, phis, boxes = _cofw_arrays(data_root)
    cell = np.empty((len(images), 1), dtype=object)
    for i, im in enumerate(images):
        cell[i, 0] = im
    path = tmp_path / "COFW_test_color.mat"
    savemat(path, {"IsT": cell, "phisT": phis, "bboxesT": boxes})
    samples = read_dataset("cofw", tmp_path, "test")
    assert len(samples) == len(faces)
    for s, (_, pts, box), im in zip(samples, faces, images):
        np.testing.assert_allclose(s.points, pts, atol=1e-4)
        np.testing.assert_allclose(s.box[:2], box[:2], atol=1e-4)
        assert np.array_equal(load_image(s), im)


def test_cofw_reader_matlab_v73_hdf5(data_root, tmp_path):
    faces, images, phis, boxes = _cofw_arrays(data_root)
    path = tmp_path / "COFW_train_color.mat"
    with h5py.File(path, "w") as f:  # MATLAB v7.3 layout: column-major arrays, a cell array of references
        refs = f.create_group("#refs#")
        ds = [refs.create_dataset(f"im{i}", data=im.T) for i, im in enumerate(images)]
        f.create_dataset("IsTr", data=np.array([[d.ref for d in ds]], dtype=h5py.ref_dtype))
        f.create_dataset("phisTr", data=phis.T)
        f.create_dataset("bboxesTr", data=boxes.T)
    samples = read_cofw_mat(path)
    for s, (_, pts, _), im in zip(samples, faces, images):
        np.testing.assert_allclose(s.points, pts, atol=1e-4)
        assert np.array_equal(load_image(s), im)


# --- crops and flips -----------------------------------------------------------------------------------------------
def test_crop_round_trip_and_pixel_alignment():
    spec = CropSpec(input_size=96, margin=0.2)
    pts = np.array([[40.0, 50.0], [200.0, 70.0], [120.0, 260.0]], np.float32)
    box = spec.box_from_points(pts)
    m = spec.matrix(box)
    crop_pts = transform_points(pts, m)
    np.testing.assert_allclose(transform_points(crop_pts, invert(m)), pts, atol=1e-4)
    # the box fills input_size / (1 + 2 margin) pixels of the crop, centred
    extent = crop_pts.max(0) - crop_pts.min(0)
    assert max(extent) == pytest.approx(96 / 1.4, rel=1e-5)
    # a single bright pixel lands where transform_points says, also through the big-downscale path
    img = np.zeros((2000, 2000, 3), np.uint8)
    cv2.circle(img, (1000, 1000), 6, (255, 255, 255), -1)
    m_small = spec.matrix((1000.0, 1000.0, 1500.0))
    crop, m2 = spec.crop(img, (1000.0, 1000.0, 1500.0))
    peak = np.unravel_index(np.argmax(crop[:, :, 0]), crop.shape[:2])[::-1]
    np.testing.assert_allclose(peak, transform_points(np.array([[1000.0, 1000.0]]), m_small)[0], atol=1.0)
    np.testing.assert_array_equal(m2, m_small)


def _detections(rng, n):
    """n random BlazeFace-like boxes (x, y, w, h) with keypoints where faces put them."""
    layout = np.array([[-0.17, -0.1], [0.17, -0.1], [0.0, 0.05], [0.0, 0.2], [-0.42, -0.02], [0.42, -0.02]])
    boxes, keypoints = [], []
    for _ in range(n):
        x, y, w = rng.uniform(0, 300), rng.uniform(0, 300), rng.uniform(60, 200)
        h = w * rng.uniform(0.95, 1.05)
        boxes.append((x, y, w, h))
        keypoints.append(np.array([x + w / 2, y + h / 2]) + (layout + rng.normal(0, 0.03, layout.shape)) * w)
    return boxes, keypoints


def test_keypoint_mapping_is_fitted_robustly_and_used_when_keypoints_come():
    from edgekd.core.crop import NUM_KEYPOINT_FEATURES, keypoint_features
    from edgekd.core.detector import MIN_KEYPOINT_FACES, fit_keypoint_mapping

    rng = np.random.default_rng(0)
    boxes, keypoints = _detections(rng, 400)
    true = rng.normal(0, 0.05, (3, NUM_KEYPOINT_FEATURES))
    true[:, 0] = (0.01, 0.08, np.log(1.1))  # intercepts: offsets and log scale
    triples = []
    for i, (box, kp) in enumerate(zip(boxes, keypoints)):
        dx, dy, ls = true @ keypoint_features(box, kp)
        if i % 10 == 0:  # a wrong match now and then: the refit without the worst 10 % ignores it
            dx, dy, ls = dx + 0.5, dy - 0.4, ls + 0.6
        s = max(box[2], box[3])
        triples.append((box, kp, (box[0] + box[2] / 2 + dx * s, box[1] + box[3] / 2 + dy * s, s * np.exp(ls))))
    weights, spread = fit_keypoint_mapping(triples)
    # the features are nearly collinear (the intercept and the log distances), so compare what the weights
    # predict on faces they were not fitted on, in box sides, not the weights themselves
    fresh = [keypoint_features(b, k) for b, k in zip(*_detections(rng, 50))]
    np.testing.assert_allclose([np.array(weights) @ f for f in fresh], [true @ f for f in fresh], atol=1e-3)
    assert max(spread) < 1e-3  # the outliers are left out of the fit; 0.5 box sides each
    assert fit_keypoint_mapping(triples[:MIN_KEYPOINT_FACES - 1]) == (None, None)

    spec = CropSpec(detector_offset=(0.0, 0.05), detector_scale=1.2, detector_keypoint_weights=weights)
    box, kp, target = triples[1]
    np.testing.assert_allclose(spec.box_from_detector(box, kp), target, atol=0.05)  # pixels
    by_box = CropSpec(detector_offset=(0.0, 0.05), detector_scale=1.2).box_from_detector(box)
    assert spec.box_from_detector(box) == by_box  # no keypoints: the box mapping
    assert spec.box_from_detector(box, np.full((6, 2), np.nan)) == by_box  # unusable keypoints: the box mapping
    assert spec.box_from_detector(box, kp[:4]) == by_box
    far = CropSpec(detector_keypoint_weights=((2.0,) + (0.0,) * 14, (0.0,) * 15, (0.0,) * 15))
    assert far.box_from_detector(box, kp) == CropSpec().box_from_detector(box)  # 2 box sides off: guarded
    big = CropSpec(detector_keypoint_weights=((0.0,) * 15, (0.0,) * 15, (0.5,) + (0.0,) * 14))
    assert big.box_from_detector(box, kp) == CropSpec().box_from_detector(box)  # e^0.5 too large: guarded
    for bad in (weights[:2], ((float("nan"),) * 15,) * 3):
        with pytest.raises(ValueError, match="3 rows of 15 finite numbers"):
            CropSpec(detector_keypoint_weights=bad)
    again = CropSpec.from_dict(json.loads(json.dumps(spec.to_dict())))  # as manifests and model metadata carry it
    assert again == spec and again.box_from_detector(box, kp) == spec.box_from_detector(box, kp)
    assert CropSpec.from_dict({"input_size": 128, "margin": 0.15}).detector_keypoint_weights is None  # older files


def test_normalisation_round_trip():
    spec = CropSpec(input_size=128)
    pts = np.random.default_rng(0).uniform(0, 127, (68, 2)).astype(np.float32)
    np.testing.assert_allclose(spec.denormalize(spec.normalize(pts).reshape(-1)), pts, atol=1e-4)


@pytest.mark.parametrize("name", sorted(SCHEMES))
def test_flip_permutation_is_an_involution(name):
    scheme = get_scheme(name)
    perm = np.array(scheme.flip_permutation)
    assert sorted(perm) == list(range(scheme.num_points))
    np.testing.assert_array_equal(perm[perm], np.arange(scheme.num_points))
    pts = np.random.default_rng(1).uniform(0, 100, (scheme.num_points, 2)).astype(np.float32)
    np.testing.assert_allclose(scheme.flip(scheme.flip(pts, 101), 101), pts, atol=1e-5)
    a, b = scheme.nme_pair
    assert perm[a] == b  # the two outer eye corners are mirror images of each other


@pytest.mark.parametrize("name,folder", [("300w", None), ("wflw", "wflw"), ("cofw", "cofw")])
def test_flipped_faces_keep_eyes_on_their_sides(data_root, name, folder):
    scheme = get_scheme(name)
    if folder is None:
        faces = [read_dataset("300w", data_root / "300w", "test")[0].points]
    else:
        faces = [p for _, p, _ in _mmpose(data_root, folder)]
    for pts in faces:
        width = float(pts[:, 0].max() + 50)
        flipped = scheme.flip(pts, width)
        a, b = scheme.nme_pair
        assert (pts[a, 0] < pts[b, 0]) == (flipped[a, 0] < flipped[b, 0])
        # every mirrored point is the partner's mirror position, so the left half of the face stays on the left
        left = pts[:, 0] < np.median(pts[:, 0])
        assert np.mean(flipped[:, 0][left] < np.median(flipped[:, 0])) > 0.7


# --- ASM ---------------------------------------------------------------------------------------------------------
def test_asm_projection(data_root):
    train = read_dataset("300w", data_root / "300w", "train")[:300]
    spec = CropSpec(input_size=128)
    shapes = np.stack([spec.normalize(transform_points(s.points, spec.matrix(spec.box_from_points(s.points))))
                       for s in train])
    asm = ActiveShapeModel.fit(shapes, 0.90)
    assert asm.explained >= 0.90 and 1 <= asm.num_components < 136
    np.testing.assert_allclose(asm.project(asm.mean), asm.mean, atol=1e-6)
    soft = asm.project(shapes)
    err = np.linalg.norm((soft - shapes).reshape(len(shapes), -1, 2), axis=-1).mean()
    assert 0 < err < 0.05  # differs, but stays close (in normalised units of the crop)
    full = ActiveShapeModel.fit(shapes, 1.0)
    assert np.abs(full.project(shapes) - shapes).max() < np.abs(soft - shapes).max()
    # coefficients are clipped to 3 sqrt(lambda): a wild shape comes back inside the model
    wild = asm.mean + 50 * asm.components[0]
    b = (asm.project(wild) - asm.mean) @ asm.components[0]
    assert b == pytest.approx(3 * np.sqrt(asm.eigenvalues[0]), rel=1e-4)


# --- prepare + pipeline -------------------------------------------------------------------------------------------
def test_prepare_writes_manifest_and_is_safe_to_rerun(tiny_prepared, tiny_300w_root, caplog):
    from edgekd.data.prepare import Manifest

    m = Manifest.load(tiny_prepared / "manifest.json")
    assert m.counts == {"train": 36, "val": 4, "test": 8}
    assert 0 < m.soft_vs_hard_nme < 15
    hard, soft = np.load(tiny_prepared / "train" / "hard.npy"), np.load(tiny_prepared / "train" / "soft.npy")
    assert hard.shape == soft.shape == (36, 68, 2) and not np.allclose(hard, soft)
    stamp = (tiny_prepared / "train" / "images.npy").stat().st_mtime_ns
    cfg = PrepareConfig(**m.config)
    with caplog.at_level(logging.INFO):
        again = prepare(cfg, tiny_prepared, progress=False)
    assert again.counts == m.counts and (tiny_prepared / "train" / "images.npy").stat().st_mtime_ns == stamp
    cfg.margin = 0.3
    with pytest.raises(EdgekdError, match="other settings"):
        prepare(cfg, tiny_prepared, progress=False)


def test_prepare_says_when_a_folder_predates_the_keypoint_mapping(tiny_prepared, tmp_path, caplog):
    """A folder prepared before the keypoint fit is reused as it is, with a line saying that --force refits it;
    one whose fit found too few faces for keypoints (36 here, under MIN_KEYPOINT_FACES) gets no such line."""
    import shutil

    from edgekd.data.prepare import Manifest

    m = Manifest.load(tiny_prepared / "manifest.json")
    assert m.detector_fit["keypoint_weights"] is None and m.crop_spec.detector_keypoint_weights is None
    older = tmp_path / "older"
    shutil.copytree(tiny_prepared, older)
    cfg = PrepareConfig(**m.config)
    with caplog.at_level(logging.INFO):
        prepare(cfg, older, progress=False)
    assert "no keypoint part" not in caplog.text
    manifest = json.loads((older / "manifest.json").read_text())
    for key in ("keypoint_weights", "keypoint_spread"):
        del manifest["detector_fit"][key]
    (older / "manifest.json").write_text(json.dumps(manifest))
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert prepare(cfg, older, progress=False).reused
    assert "no keypoint part" in caplog.text and "--force refits it" in caplog.text


def test_prepare_skips_corrupt_image_and_counts_it(tmp_path, tiny_300w_root):
    from tests.conftest import make_300w_subset

    root = make_300w_subset(tmp_path / "root", n_train=12, n_test=0)
    victim = sorted((root / "lfpw" / "trainset").glob("*.jpg"))[3]
    victim.unlink()
    victim.write_bytes(b"garbage")
    m = prepare(PrepareConfig(root=str(root), input_size=64, val_fraction=0.2), tmp_path / "out", progress=False)
    assert m.counts["train"] + m.counts["val"] == 11 and len(m.skipped) == 1 and victim.name in m.skipped[0]
    assert "test" not in m.counts


def test_canonical_crop_equals_cropspec_on_the_original(tiny_prepared):
    from edgekd.data.pipeline import PreparedData

    data = PreparedData(tiny_prepared)
    images, hard = data.arrays("val")
    face = data.split("val").faces[0]
    original = load_image(face["image"])
    pts = read_pts(face["image"].rsplit(".", 1)[0] + ".pts", 68)
    direct, m = data.crop.crop(original, data.crop.box_from_points(pts))
    np.testing.assert_allclose(hard[0], transform_points(pts, m), atol=1e-3)
    assert np.mean(np.abs(direct.astype(float) - images[0].astype(float))) < 2.0


def test_augmentation_moves_points_with_the_pixels():
    scheme = get_scheme("300w")
    rng = np.random.default_rng(3)
    store = np.zeros((96, 96, 3), np.uint8)
    pts = rng.uniform(30, 66, (68, 2)).astype(np.float32)
    x, y = np.round(pts[30]).astype(int)
    store[y, x] = 255
    pts[30] = (x, y)
    cfg = AugmentConfig(photometric=False, blur=False, noise=False, occlusion=False, flip_prob=1.0)
    crop, (out,), flipped = augment_sample(store, [pts], scheme, 64, rng, cfg)
    assert flipped
    # after mirroring, point 30 (nose tip, its own mirror partner) is still the bright pixel
    peak = np.unravel_index(np.argmax(crop[:, :, 0]), crop.shape[:2])[::-1]
    np.testing.assert_allclose(peak, out[30], atol=1.0)


def test_mild_preset_only_narrows_the_rotation():
    from dataclasses import asdict

    from edgekd.data.augment import random_matrix

    light, mild = AugmentConfig.preset("light"), AugmentConfig.preset("mild")
    assert {k: v for k, v in asdict(mild).items() if k != "max_rotation_deg"} == \
        {k: v for k, v in asdict(light).items() if k != "max_rotation_deg"}
    for cfg, lo, hi in ((mild, 9.0, 10.0 + 1e-6), (light, 23.0, 25.0 + 1e-6)):
        rng = np.random.default_rng(0)
        angles = [abs(np.degrees(np.arctan2(m[1, 0], m[0, 0]))) for m in
                  (random_matrix(rng, cfg, 96, 64) for _ in range(400))]
        assert lo < max(angles) <= hi


def test_tight_preset_narrows_shift_and_scale_of_mild():
    from dataclasses import asdict

    from edgekd.data.augment import random_matrix

    mild, tight = AugmentConfig.preset("mild"), AugmentConfig.preset("tight")
    changed = {"max_shift", "scale_range"}
    assert {k: v for k, v in asdict(tight).items() if k not in changed} == \
        {k: v for k, v in asdict(mild).items() if k not in changed}
    for cfg, shift, scale in ((tight, 0.03, 0.06), (mild, 0.05, 0.10)):
        rng = np.random.default_rng(0)
        ms = [random_matrix(rng, cfg, 96, 64) for _ in range(400)]
        scales = np.array([np.hypot(m[0, 0], m[1, 0]) for m in ms])
        # the centre of the stored image lands on the crop centre, moved by the shift alone
        centres = np.array([m[:, :2] @ np.full(2, 95 / 2.0) + m[:, 2] - 63 / 2.0 for m in ms]) / 64
        assert 0.8 * shift < np.abs(centres).max() <= shift + 1e-9
        assert 0.8 * scale < np.abs(scales - 1).max() <= scale + 1e-9


def test_photometric_never_wraps_around():
    cfg = AugmentConfig(brightness=0.0, contrast_range=(1.5, 1.5), gamma_range=(1.0, 1.0), photometric_prob=1.0,
                        blur=False, noise=False, occlusion=False)
    img = np.zeros((8, 8, 3), np.uint8)
    img[:4], img[4:] = 250, 5  # 1.5x contrast: 311 and -56 before clipping, 55 and 200 if they wrapped
    out = photometric(img, np.random.default_rng(0), cfg)
    assert (out[:4] == 255).all() and (out[4:] == 0).all()


def test_make_dataset_batches(tiny_prepared):
    from edgekd.data.pipeline import make_dataset

    ds = make_dataset(tiny_prepared, "train", batch_size=8, seed=1)
    images, labels = next(iter(ds))
    assert images.shape == (8, 64, 64, 3) and labels["hard"].shape == (8, 136) and labels["soft"].shape == (8, 136)
    assert 0.0 <= float(images.numpy().min()) and float(images.numpy().max()) <= 1.0
    assert np.abs(labels["hard"].numpy()).max() < 0.8
    first = [b[1]["hard"].numpy() for b in make_dataset(tiny_prepared, "val", 4, augment=False, shuffle=False)]
    second = [b[1]["hard"].numpy() for b in make_dataset(tiny_prepared, "val", 4, augment=False, shuffle=False)]
    np.testing.assert_array_equal(np.concatenate(first), np.concatenate(second))
