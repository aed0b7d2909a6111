"""The bench's video row: pan-and-zoom clips made from real test faces, tracked and cut from detector crops on the
same frames, timed per frame, and reported (results.json, report.md, the console) through `edgekd bench --video`."""
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from runtime_helpers import SHIPPED_INT8, W300
from test_bench import _mini_300w

from edgekd.bench.video import CLIP, pan_zoom, render_clip
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
    report = (out / "report.md").read_text()
    assert "## Video: tracking vs detector crops on the same frames" in report
    assert f"### Time per frame (ms) on {cpu_name()}" in report
    assert f"video, {MODEL.name}: 60 frames" in res.output
