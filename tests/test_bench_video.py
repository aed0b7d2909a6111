"""The bench's video row: pan-and-zoom clips made from real test faces, tracked and cut from detector crops on the
same frames, timed per frame, and reported (results.json, report.md, the console) through `edgekd bench --video`."""
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from runtime_helpers import SHIPPED_INT8, W300
from test_bench import _mini_300w

from edgekd.bench.video import (CLIP, JAW, TALK, face_axes, fold_free_share, morph_mesh, pan_zoom, render_clip,
                                render_talking_clip, signed_areas, talking_levels, talking_offsets, talks)
from edgekd.core.crop import CropSpec, transform_points
from edgekd.core.timing import cpu_name
from edgekd.runtime.tracker import MAX_DRIFT

MODEL = SHIPPED_INT8
needs_data = pytest.mark.skipif(not W300.is_dir(), reason="300-W data not available")


def _face(cx, cy, side):
    """A square of landmarks (the corners and the centre) with the given landmark box."""
    h = side / 2.0
    return np.array([[cx - h, cy - h], [cx + h, cy - h], [cx - h, cy + h], [cx + h, cy + h], [cx, cy]])


@pytest.mark.parametrize("face, zoom_in", [((150.0, 120.0, 80.0), True), ((330.0, 260.0, 300.0), False)])
def test_clip_pans_and_zooms_slowly_and_keeps_the_face_in_frame(face, zoom_in):
    shape = (480, 640, 3)
    points = _face(*face)
    mats = pan_zoom(shape, points)
    assert len(mats) == CLIP["frames"]
    boxes = [CropSpec.box_from_points(transform_points(points, m)) for m in mats]
    sides = np.array([b[2] for b in boxes])
    ratio = sides[1:] / sides[:-1]
    assert np.allclose(ratio, 1 + CLIP["zoom"] if zoom_in else 1 / (1 + CLIP["zoom"]), rtol=1e-4)  # small: in
    steps = np.hypot(*np.diff(np.array([b[:2] for b in boxes]), axis=0).T)
    assert steps.max() <= 1.2 * CLIP["pan"] * face[2] and steps.sum() > 3 * CLIP["pan"] * face[2]  # slow, but moving
    for cx, cy, side in boxes:  # the face box stays inside the frame
        assert side / 2 <= cx <= 640 - side / 2 and side / 2 <= cy <= 480 - side / 2


def test_rendered_frames_carry_their_ground_truth():
    """A bright dot drawn at a landmark lands where the moved ground truth says, in every frame."""
    image = np.zeros((240, 320, 3), np.uint8)
    points = _face(120.0, 100.0, 60.0)
    image[100, 120] = 255
    frames, truth = render_clip(image, points, frames=12)
    assert len(frames) == len(truth) == 12 and frames[0].shape == image.shape
    for frame, pts in zip(frames, truth):
        y, x = np.unravel_index(np.argmax(frame[:, :, 0]), frame.shape[:2])
        assert np.hypot(x - pts[4, 0], y - pts[4, 1]) <= 1.0, ((x, y), pts[4])


def _real_face(side: float = 120.0, centre=(160.0, 130.0)) -> np.ndarray:
    """A real 300-W training face's 68 annotated points, moved to a landmark box of ``side`` around ``centre``."""
    from edgekd.data.readers import read_300w

    shape = np.asarray(read_300w(W300, "train")[0].points, np.float64)
    shape = (shape - shape.mean(0)) / np.ptp(shape, axis=0).max()
    return shape * side + centre


def test_only_300w_faces_talk():
    """The talking offsets name 300-W's lips, chin and brows: another scheme, 68 points or not, gets no talking clips."""
    from edgekd.core.schemes import get_scheme, make_scheme

    assert talks(get_scheme("300w")) and not talks(get_scheme("wflw")) and not talks(get_scheme("cofw"))
    assert not talks(make_scheme("my68", 68, flip_permutation=list(range(68)), nme_pair=(0, 16)))


@needs_data
def test_talking_offsets_move_the_mouth_chin_and_brows_not_the_eyes_or_nose():
    """An open mouth drops the lower lip (by TALK's peak, in inter-ocular distances) and the chin, a smile moves
    the mouth corners outwards, raised brows go up; the eyes and the nose never move."""
    face = _real_face()
    iod = np.linalg.norm(face[36] - face[45])
    still = talking_offsets(face, 0.0, 0.0, 0.0)
    assert not still.any()
    open_ = talking_offsets(face, 1.0, 0.0, 0.0)
    np.testing.assert_allclose(open_[57, 1], TALK["open"] * iod, rtol=1e-2)  # image y grows down the face
    assert open_[8, 1] > 0.5 * open_[57, 1] and open_[17:27].sum() == 0
    smile = talking_offsets(face, 0.0, 1.0, 0.0)
    assert smile[48, 0] < 0 < smile[54, 0] and smile[48, 1] < 0  # wider and higher
    brows = talking_offsets(face, 0.0, 0.0, 1.0)
    assert (brows[17:27, 1] < 0).all()
    for off in (open_, smile, brows):
        assert not off[27:48].any()  # the nose and the eyes
    levels = talking_levels(60, seed=3)
    assert levels.shape == (60, 3) and 0 <= levels.min() and levels.max() <= 1
    talk = levels[:, 0]
    assert ((talk[1:-1] > talk[:-2]) & (talk[1:-1] > talk[2:])).sum() >= 6  # about 4 openings a second, 2 s


@needs_data
def test_talking_frames_carry_their_ground_truth():
    """Bright dots drawn at the lower lip and a brow land where each frame's moved ground truth says, through the
    morph and the camera's pan and zoom."""
    image = np.zeros((260, 320, 3), np.uint8)
    face = _real_face()
    for channel, i in ((0, 57), (1, 19)):
        x, y = np.round(face[i]).astype(int)
        image[y - 1:y + 2, x - 1:x + 2, channel] = 255
    frames, truth = render_talking_clip(image, face, frames=12, seed=0)
    assert len(frames) == len(truth) == 12 and frames[0].shape == image.shape
    moved = [np.linalg.norm(t[57] - truth[0][57]) for t in truth]
    assert max(moved) > 5.0  # the mouth does open
    for frame, pts in zip(frames, truth):
        for channel, i in ((0, 57), (1, 19)):
            weights = frame[:, :, channel].astype(np.float64)
            ys, xs = np.indices(weights.shape)
            centre = np.array([(xs * weights).sum(), (ys * weights).sum()]) / weights.sum()
            assert np.linalg.norm(centre - pts[i]) <= 1.0, (i, centre, pts[i])


def _folds(points, offsets) -> int:
    """How many triangles of the talking morph's mesh turn over when ``points`` move by ``offsets``."""
    src, triangles, _ = morph_mesh(points)
    moved = np.concatenate([src[:len(points)] + offsets, src[len(points):]])
    before = signed_areas(src, triangles)
    return int(((signed_areas(moved, triangles) * before <= 0) & (before != 0)).sum())


@needs_data
def test_talking_morph_keeps_every_point_and_folds_no_triangle():
    """On real training faces: every annotated point is a vertex of the morph's mesh (inner lips annotated on one
    another included), the lower lip and the chin drop by their place across the face, less away from the chin
    (the jaw is one bone), and with the clip's share of its expression no frame folds a triangle over."""
    from edgekd.data.readers import read_300w

    faces = [np.asarray(s.points, np.float64) for s in read_300w(W300, "train")[:40]]
    closed = [f for f in faces if np.linalg.norm(f[62] - f[66]) < 1e-6]
    assert closed  # the case the mesh must separate
    shares = []
    for k, face in enumerate(faces):
        _, triangles, _ = morph_mesh(face)
        assert set(range(68)) <= set(triangles.ravel().tolist())
        u, v, _ = face_axes(face)
        across, drop = (face[list(JAW)] - face[8]) @ u, talking_offsets(face, 1.0, 0.0, 0.0)[list(JAW)] @ v
        for side in (across <= 0, across >= 0):  # a drop set by the place across the face alone: a shear
            order = np.argsort(np.abs(across[side]))
            assert np.all(np.diff(drop[side][order]) <= 1e-9) and drop.max() > 0
        offsets = [talking_offsets(face, *levels) for levels in talking_levels(CLIP["frames"], seed=k)]
        shares.append(fold_free_share(face, offsets))
        assert all(_folds(face, shares[-1] * off) == 0 for off in offsets)
    assert np.mean(np.array(shares) == 1.0) >= 0.85  # most clips take their whole expression (95 % of 1,675)


@needs_data
def test_lips_annotated_across_one_another_open_less_not_folded():
    """A face whose inner lower lip is annotated above the upper one cannot open its mouth without folding the
    morph over: its clip takes a smaller share of the expression, no frame folds, and the clip's ground truth is
    the face moved by that share of it."""
    face = _real_face()
    crossed = face.copy()
    crossed[[67, 66, 65]] = face[[61, 62, 63]] - (0.0, 2.0)  # 2 px above the upper lip's inner edge
    opening = [talking_offsets(crossed, 1.0, 0.0, 0.0)]
    assert _folds(crossed, opening[0]) > 0
    share = fold_free_share(crossed, opening)
    assert share < 1.0 and _folds(crossed, share * opening[0]) == 0
    offsets = [talking_offsets(crossed, *levels) for levels in talking_levels(CLIP["frames"], seed=0)]
    share = fold_free_share(crossed, offsets)
    assert share < 1.0
    image = np.zeros((260, 320, 3), np.uint8)
    _, truth = render_talking_clip(image, crossed, seed=0)
    for pts, off, m in zip(truth, offsets, pan_zoom(image.shape, crossed)):
        np.testing.assert_allclose(pts, transform_points(crossed + share * off, m), atol=1e-9)


@needs_data
def test_a_closed_mouths_lower_lip_opens_in_the_picture():
    """Inner lips annotated on one another (a closed mouth): the picture just below them, the lower lip's inner
    edge, drops with the lower lip's points when the mouth opens, not with the upper lip's, which stay. Three points
    piled at one place each stay a vertex of the mesh."""
    from edgekd.bench.video import morph

    face = _real_face(side=200.0, centre=(200.0, 200.0))
    face[[67, 66, 65]] = face[[61, 62, 63]]
    _, v, _ = face_axes(face)
    dot = face[66] + 3.0 * v  # inside the lower lip, 3 px under its inner edge
    image = np.zeros((400, 400, 3), np.uint8)
    x, y = np.round(dot).astype(int)
    image[y - 1:y + 2, x - 1:x + 2] = 255
    off = talking_offsets(face, 1.0, 0.0, 0.0)
    assert fold_free_share(face, [off]) == 1.0 and np.linalg.norm(off[66]) > 15.0
    weights = morph(image, face, off)[:, :, 0].astype(np.float64)
    ys, xs = np.indices(weights.shape)
    centre = np.array([(xs * weights).sum(), (ys * weights).sum()]) / weights.sum()
    assert np.linalg.norm(centre - (np.round(dot) + off[66])) <= 1.5, (centre, dot, off[66])
    piled = face.copy()
    piled[[50, 61, 67]] = face[61]
    assert set(range(68)) <= set(morph_mesh(piled)[1].ravel().tolist())


def test_video_option_is_in_bench_help():
    from edgekd.cli.main import main

    res = CliRunner().invoke(main, ["bench", "--help"])
    text = " ".join(res.output.split()).replace("- ", "-")  # help text is wrapped, at hyphens too
    assert res.exit_code == 0 and "--video" in text and "pan-and-zoom clip" in text


@needs_data
def test_bench_video_tracks_real_faces_close_to_detector_crops(tmp_path):
    """`edgekd bench --video` on 3 real test faces: per-frame NME with tracking within a sane bound of detector
    crops on the same frames, a per-frame time for each thread count, and the row in results.json and report.md."""
    from edgekd.cli.main import main

    data = _mini_300w(tmp_path / "300w", n=3)
    out = tmp_path / "bench"
    res = CliRunner().invoke(main, ["bench", str(MODEL), "--root", str(data), "--threads", "1,2", "--video",
                                    "--out-dir", str(out)])
    assert res.exit_code == 0, res.output
    results = json.loads((out / "results.json").read_text())
    video, (still,) = results["video"], results["entries"]
    assert video["cpu"] == cpu_name() and video["clip"]["frames"] == 3 * CLIP["frames"]
    (row,) = video["models"]
    acc = row["accuracy"]
    assert row["frames"] == 60 and row["lost_frames"] == 0 and row["detector_misses"] == 0
    for pipeline in ("tracking", "tracking_raw", "detector", "gt"):
        assert acc[pipeline]["count"] == 60 and 1.0 < acc[pipeline]["nme"] < 10.0, (pipeline, acc[pipeline])
    # tracked crops (the model's own landmark box, carried ahead): about as good as detector crops (smoothing lags a
    # little)
    assert acc["tracking_raw"]["nme"] < 1.15 * acc["detector"]["nme"], acc
    assert acc["tracking"]["nme"] < 1.25 * acc["detector"]["nme"], acc
    assert abs(acc["detector"]["nme"] - still["nme"]) < 2.0  # the clips' detector crops: like the stills'
    assert row["same_frames"]["frames"] == 60
    assert row["tracker"]["detector_runs"] == 6  # frames 0 and 10 of each clip: no track was lost
    # the still clips count apart: at least the scheduled runs (frames 0 and 10), more where the drift check fired
    still_counts = row["still_tracker"]
    assert still_counts["frames"] == 60 and still_counts["detector_runs"] >= 6 and "drifted" in still_counts
    assert video["clip"]["max_drift"] == MAX_DRIFT
    for t in ("1", "2"):
        ms = row["frame_ms"][t]
        assert ms["tracking"]["n"] == ms["detector"]["n"] == 60
        assert ms["tracking"]["median"] > 0 and ms["detector"]["median"] > 0, ms  # (which is faster: benchmarks)
    # the talking clips: every face again with its expression changing, tracked (timed) and cut from detector crops
    talk = row["talking"]
    assert talk["frames"] == 60 and video["clip"]["talking"] == TALK
    for pipeline in ("tracking", "tracking_raw", "detector"):
        assert talk["accuracy"][pipeline]["count"] == 60 and 1.0 < talk["accuracy"][pipeline]["nme"] < 12.0
    assert talk["same_frames"]["frames"] == 60 and talk["tracker"]["detector_runs"] >= 6
    assert talk["tracking_ms"]["n"] == 60 and talk["tracking_ms"]["median"] > 0
    report = (out / "report.md").read_text()
    assert "## Video: tracking vs detector crops on the same frames" in report
    assert f"### Time per frame (ms) on {cpu_name()}" in report
    assert "### Talking clips: the same clips with a face that changes shape" in report
    assert f"video, {MODEL.name}: 60 frames" in res.output
    assert f"video, {MODEL.name}, talking clips:" in res.output
