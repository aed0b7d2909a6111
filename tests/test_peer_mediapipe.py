"""`edgekd bench --compare mediapipe`: the shipped Face Mesh files, its 468 -> 68 map, the peer on a real face, its
rows in a bench run, and one-line errors when a file is missing."""
import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from runtime_helpers import W300

from edgekd.bench import benchmark, facemesh
from edgekd.bench.facemesh import ASSET, FaceMeshPeer, Roi, roi_from_detection, roi_from_points
from edgekd.bench.mediapipe_ops import transform_landmarks, transform_tensor_bilinear
from edgekd.bench.meshmap import MAP_FILE, NUM_MESH, MeshMap
from edgekd.core.errors import ModelError
from edgekd.core.imageio import load_image, read_pts
from edgekd.core.metrics import nme
from edgekd.core.schemes import get_scheme

needs_data = pytest.mark.skipif(not W300.is_dir(), reason="300-W data not available")


@pytest.fixture(scope="module")
def peer():
    p = FaceMeshPeer()
    yield p
    p.close()


def _test_faces(n):
    """The first n lfpw test faces: (image, points)."""
    out = []
    for pts in sorted((W300 / "lfpw" / "testset").glob("*.pts"))[:n]:
        out.append((load_image(pts.with_suffix(".png")), read_pts(pts)))
    return out


def test_shipped_files_are_the_wheels_and_the_map_is_recorded():
    import hashlib

    assert hashlib.sha256(ASSET.read_bytes()).hexdigest() == facemesh.ASSET_SHA256
    assert (ASSET.parent / f"NOTICE.{ASSET.stem}.md").is_file()
    m = MeshMap.load()
    assert m.weights.shape == (2 * NUM_MESH + 1, 136) and m.num_points == 68 and np.isfinite(m.weights).all()
    assert 1.2 < m.gt_scale < 2.0 and max(abs(v) for v in m.gt_offset) < 0.2
    assert "training faces" in m.info["fitted_on"] and m.info["script"] == "benchmarks/fit_facemesh_map.py"
    assert 2.0 < m.info["residual_nme_val_det"]["nme_percent"] < 5.0  # the residual on the validation faces


def test_roi_round_trip_and_rotation():
    roi = Roi(120.0, 80.0, 90.0, np.radians(20))
    p = np.array([[100.0, 70.0], [150.0, 95.0]])
    assert np.allclose(roi.to_image(roi.to_normalised(p)), p, atol=1e-4)
    m = roi.matrix(192)
    crop = p @ m[:, :2].T + m[:, 2]
    assert np.allclose(crop, (roi.to_normalised(p) + 0.5) * 192 - 0.5)  # pixel centres, MediaPipe's corners
    # eye keypoints 20 degrees down to the right: the crop's x axis follows them
    box, kps = (80, 40, 80, 80), np.array([[100, 60], [100 + np.cos(0.35) * 40, 60 + np.sin(0.35) * 40]] + [[0, 0]] * 4)
    r = roi_from_detection(box, kps)
    assert r.cx == 120 and r.cy == 80 and r.side == 120 and abs(r.angle - 0.35) < 1e-9
    pts = np.zeros((68, 2))
    pts[36], pts[45] = (10, 10), (30, 10)
    pts[8] = (20, 40)
    g = roi_from_points(pts, (0.0, 0.0), 1.0)
    assert g.angle == 0 and g.side == 40 and (g.cx, g.cy) == (15, 20)  # the other 65 points sit at (0, 0)


def test_custom_ops_match_their_definitions():
    x = np.random.default_rng(0).normal(size=(1, 6, 6, 2)).astype(np.float32)
    identity = np.eye(4, dtype=np.float32)  # output pixel i reads input pixel i (after the half-pixel correction)
    out = transform_tensor_bilinear(x, identity, {"output_height": 6, "output_width": 6})
    assert np.allclose(out, x, atol=1e-6)
    shifted = identity.copy()
    shifted[0, 3] = 10.0  # every sample outside the input: zeros, as MediaPipe's kernel gives
    assert not transform_tensor_bilinear(x, shifted, {"output_height": 6, "output_width": 6}).any()
    m = np.eye(4, dtype=np.float32)
    m[:2, :2], m[:2, 3] = [[0, -2], [2, 0]], (5, 7)
    p = transform_landmarks(np.array([[[1.0, 0.0], [0.0, 1.0]]], np.float32), m)
    assert np.allclose(p[0], [[5, 9], [3, 7]])


@needs_data
def test_peer_lands_the_68_points_on_a_real_face(peer):
    scheme = get_scheme("300w")
    (image, points), = _test_faces(1)
    out, times = peer.run(image, points, ("detector", "gt"))
    for protocol in ("detector", "gt"):
        assert out[protocol].shape == (68, 2)
        assert nme(out[protocol], points, scheme) < 0.06, protocol  # ~0.03 on typical faces
    assert {"detector", "crop", "model", "post", "end_to_end"} <= set(times)
    assert peer.runtime.startswith("ai-edge-litert") and "MediaPipe ops" in peer.runtime


@needs_data
def test_bench_gives_the_peer_its_rows(tmp_path):
    root = tmp_path / "300w" / "lfpw" / "testset"
    root.mkdir(parents=True)
    for pts in sorted((W300 / "lfpw" / "testset").glob("*.pts"))[:3]:
        for f in (pts, pts.with_suffix(".png")):
            (root / f.name).symlink_to(f)
    res = benchmark([], data=tmp_path / "300w", out=tmp_path / "o", crop="both", threads=(1,),
                    compare=("mediapipe",), progress=False, e2e_images=2, worst=0)
    rows = {e["protocol"]: e for e in res.results["entries"]}
    assert set(rows) == {"detector", "gt"} and all(e["model"] == "MediaPipe Face Mesh" for e in rows.values())
    for e in rows.values():
        assert e["kind"] == "peer" and e["count"] == 3 and e["nme"] < 6.0
        assert e["size_mb"] == pytest.approx((ASSET.stat().st_size + MAP_FILE.stat().st_size) / 1e6, abs=1e-3)
        lat = e["latency_ms"]
        assert lat["threads"] == ["1"] and lat["model"]["1"] > 0 and lat["end_to_end"]["1"] > lat["model"]["1"]
        assert set(lat["end_to_end_stages"]["1"]) == {"detector", "crop", "model", "post", "other"}
    assert "MediaPipe Face Mesh" in res.table
    report = (tmp_path / "o" / "report.md").read_text()
    assert "face_landmark_to_300w.npz" in report and "| MediaPipe Face Mesh | 1 |" in report
    assert json.loads((tmp_path / "o" / "results.json").read_text())["config"]["compare"] == ["mediapipe"]


def test_missing_model_file_is_one_cli_line(tmp_path, monkeypatch):
    from edgekd.cli.main import main

    assets = tmp_path / "assets"
    shutil.copytree(ASSET.parent, assets)
    (assets / ASSET.name).unlink()
    monkeypatch.setattr(facemesh, "ASSET", assets / ASSET.name)
    res = CliRunner().invoke(main, ["bench", "--compare", "mediapipe", "--out-dir", str(tmp_path / "o")])
    assert res.exit_code == 2
    (line,) = res.output.strip().splitlines()
    assert line.startswith("error:") and ASSET.name in line and "missing" in line and "--compare mediapipe" in line


def test_missing_or_broken_map_is_one_line(tmp_path):
    with pytest.raises(ModelError, match=r"point map is missing") as e:
        MeshMap.load(tmp_path / "none.npz")
    assert "\n" not in str(e.value)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ModelError, match=r"not a Face Mesh point map"):
        MeshMap.load(tmp_path / "bad.npz")
