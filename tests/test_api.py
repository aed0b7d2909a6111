"""The Python API and `edgekd predict` over many inputs, as a user calls them: the README's example as written,
a folder of photos, an unreadable file among them, and `--show` where no window can open."""
import csv
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from runtime_helpers import SHIPPED_INT8 as MODEL

from edgekd.cli.main import main
from edgekd.core.errors import DataError, OptionError

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not MODEL.is_file(), reason=f"{MODEL} not shipped")


@pytest.fixture(scope="module")
def astronaut():
    from skimage import data

    return np.ascontiguousarray(data.astronaut())


def _write(path: Path, rgb) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
    return path


def _photos(folder: Path, astronaut, n: int) -> list[Path]:
    """``n`` different pictures of the astronaut's face: crops that keep the face (at x 177-273, y 83-178), every
    other one mirrored, every third one scaled down."""
    paths = []
    for k in range(n):
        x0, y0 = 8 * (k % 6), 10 * (k % 5)
        img = astronaut[y0:y0 + 400, x0:x0 + 420]
        img = img[:, ::-1] if k % 2 else img
        img = cv2.resize(img, None, fx=0.75, fy=0.75, interpolation=cv2.INTER_AREA) if k % 3 == 0 else img
        paths.append(_write(folder / f"photo_{k:02d}.jpg", img))
    return paths


def _digest(folder: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _readme_example() -> str:
    text = (REPO / "README.md").read_text()
    m = re.search(r"^### Python\n+```python\n(.*?)```", text, re.MULTILINE | re.DOTALL)
    assert m, "README.md: no ```python block under '### Python'"
    return m.group(1)


def test_the_readme_python_example_runs_as_written(tmp_path, monkeypatch, capsys, astronaut):
    """The three lines a user copies from the README, in a folder with the shipped model and a photo."""
    code = _readme_example()
    assert len(code.strip().splitlines()) == 3, code
    (tmp_path / "models").symlink_to(REPO / "models")
    _write(tmp_path / "photo.jpg", astronaut)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1, lines  # the astronaut has one face
    score, rest = lines[0].split(" ", 1)
    assert 0.8 < float(score) <= 1.0 and rest.endswith("(68, 2)"), lines
    x, y, w, h = (float(v) for v in re.findall(r"[-\d.]+", rest.split(")")[0]))
    assert abs(x - 177) < 5 and abs(y - 83) < 5 and 85 < w < 105 and 85 < h < 105, lines


def test_import_is_cheap_and_the_landmarker_loads_no_training_code():
    """`import edgekd` loads one module of the package; Landmarker runs with every training module (and
    TensorFlow) made unimportable, as tests/test_layout.py checks for the runtime."""
    from test_layout import BLOCKER, TRAINING

    code = BLOCKER.format(blocked=(*TRAINING, "tensorflow", "tf_keras")) + f"""
import edgekd
loaded = sorted(m for m in sys.modules if m.startswith('edgekd'))
assert loaded == ['edgekd', 'edgekd.core', 'edgekd.core.logs'], loaded
from skimage import data
with edgekd.Landmarker({str(MODEL)!r}) as lm:
    (result,) = lm.predict(data.astronaut())
assert len(result.faces) == 1 and result.faces[0].points.shape == (68, 2), result
assert not [m for m in sys.modules if '.'.join(m.split('.')[:2]) in BLOCKED or m.split('.')[0] in BLOCKED]
print('ok')
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]


def test_every_api_name_resolves_to_the_verb_it_mirrors():
    """Each lazy name reaches its function (wherever the code behind it moved), and none hides a folder."""
    code = """
import edgekd, inspect
for name in edgekd.__all__:
    assert getattr(edgekd, name) is not None, name
assert inspect.signature(edgekd.train_recipe).parameters.keys() >= {'prepared_dir', 'run_dir', 'recipe'}
assert edgekd.load_recipe('default').name == 'default'
assert edgekd.export_model.__name__ == 'export_model' and edgekd.benchmark.__name__ == 'benchmark'
import edgekd.export, edgekd.training
assert inspect.ismodule(edgekd.export) and inspect.ismodule(edgekd.training)
assert set(edgekd.__all__) <= set(dir(edgekd))
try:
    edgekd.no_such_name
except AttributeError as e:
    assert 'no_such_name' in str(e)
else:
    raise AssertionError('no AttributeError')
print('ok')
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]


def test_predict_takes_arrays_paths_folders_patterns_and_lists(tmp_path, astronaut):
    from edgekd import Landmarker

    photos = _photos(tmp_path / "photos", astronaut, 3)
    (tmp_path / "photos" / "notes.txt").write_text("not an image: a folder gives its images only")
    with Landmarker(MODEL) as lm:
        results = lm.predict([astronaut, photos[0], tmp_path / "photos", str(tmp_path / "photos" / "*_0[12].jpg")])
        assert [r.source for r in results] == ["image 0", str(photos[0]), *map(str, photos), *map(str, photos[1:])]
        for r in results:
            (face,) = r.faces
            assert face.points.shape == (68, 2) and 0.5 <= face.score <= 1 and len(face.box) == 4
            cx, cy, side = face.crop
            assert face.box[0] < cx < face.box[0] + face.box[2] and side > 0.8 * face.box[2]
            assert {"detector", "crop", "model", "inverse"} <= set(r.timings_ms)
        assert results[0].path is None and results[1].path == photos[0]
        drawn = results[1].save(tmp_path / "out" / "drawn.png")
        assert cv2.imread(str(drawn)).shape == cv2.imread(str(photos[0])).shape
        with pytest.raises(Exception, match="photo_00.jpg"):
            results[1].save(photos[0])  # never over the input
        broken = tmp_path / "broken.jpg"
        broken.write_bytes(b"not a jpeg")
        with pytest.raises(DataError, match="broken.jpg: not a readable image"):
            lm.predict([photos[0], broken])
        stream = lm.predict([broken, photos[0]], stream=True, skip_unreadable=True)
        first = next(stream)
        assert first.error.startswith(f"{broken}: not a readable image") and first.faces == [] and first.image is None
        assert len(next(stream).faces) == 1
        (tmp_path / "empty").mkdir()
        with pytest.raises(DataError, match="empty: no image in this folder"):
            lm.predict(tmp_path / "empty")
        with pytest.raises(OptionError, match=r"clip.mp4: a video or camera; use Landmarker.track"):
            lm.predict("clip.mp4")


def test_track_follows_one_face_through_frames(astronaut):
    from edgekd import Landmarker

    frames = [np.ascontiguousarray(np.roll(astronaut, 3 * k, axis=1)) for k in range(12)]
    with Landmarker(MODEL) as lm:
        results = list(lm.track(frames, fps=30, redetect_every=5))
    assert len(results) == 12 and all(len(r.faces) == 1 for r in results)
    assert {r.faces[0].track_id for r in results} == {0}
    detected = [k for k, r in enumerate(results) if r.faces[0].box is not None]
    assert detected == [0, 5, 10]  # the detector only every 5th frame; the others are tracked from the points
    shift = results[-1].faces[0].points.mean(0)[0] - results[0].faces[0].points.mean(0)[0]
    assert 25 < shift < 40  # the face moved 33 px to the right


def test_predict_over_a_folder_of_20_images_writes_20_pictures_and_one_summary(tmp_path, monkeypatch, astronaut):
    photos = _photos(tmp_path / "photos", astronaut, 20)
    before = _digest(tmp_path / "photos")
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(main, ["predict", str(MODEL), "photos"])
    assert r.exit_code == 0, r.output
    run = tmp_path / "runs" / "predict" / "exp"
    pictures = sorted(p.name for p in run.glob("*.png"))
    assert pictures == [p.with_suffix(".png").name for p in photos]
    for p in photos[:3]:  # the picture is the photo with the landmarks drawn
        drawn, original = cv2.imread(str(run / p.with_suffix(".png").name)), cv2.imread(str(p))
        assert drawn.shape == original.shape and np.mean(np.any(drawn != original, axis=2)) > 0.001
    doc = json.loads((run / "faces.json").read_text())
    assert [Path(i["file"]).name for i in doc["images"]] == [p.name for p in photos] and doc["skipped"] == []
    assert all(len(i["faces"]) == 1 for i in doc["images"]), [len(i["faces"]) for i in doc["images"]]
    with open(run / "faces.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 20 and [Path(row["file"]).name for row in rows] == [p.name for p in photos]
    assert {row["face"] for row in rows} == {"1"} and all(0.5 <= float(row["score"]) <= 1 for row in rows)
    assert len(rows[0]) == 7 + 2 * 68
    assert float(rows[0]["x0"]) == pytest.approx(doc["images"][0]["faces"][0]["points"][0][0], abs=1e-3)
    assert "20 images: 20 read, 0 unreadable (skipped); 20 faces found" in r.stdout
    assert r.stdout.strip().splitlines()[-1] == f"wrote {Path('runs/predict/exp')} (20 pictures, faces.json, faces.csv)"
    assert _digest(tmp_path / "photos") == before  # inputs untouched


def test_an_unreadable_file_is_listed_and_skipped_with_exit_status_1(tmp_path, monkeypatch, astronaut):
    photos = _photos(tmp_path / "photos", astronaut, 3)
    broken = tmp_path / "photos" / "photo_01b.jpg"
    broken.write_bytes(b"\xff\xd8 a truncated jpeg")
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(main, ["predict", str(MODEL), "photos"])
    assert r.exit_code == 1, r.output
    assert f"skipped {Path('photos/photo_01b.jpg')}: not a readable image" in r.stdout
    assert "4 images: 3 read, 1 unreadable (skipped)" in r.stdout and "Traceback" not in r.output
    run = tmp_path / "runs" / "predict" / "exp"
    assert sorted(p.name for p in run.glob("*.png")) == [p.with_suffix(".png").name for p in photos]
    doc = json.loads((run / "faces.json").read_text())
    assert [Path(s["file"]).name for s in doc["skipped"]] == ["photo_01b.jpg"] and len(doc["images"]) == 3
    # the same with the files named one by one, a missing one among them
    r = CliRunner().invoke(main, ["predict", str(MODEL), str(photos[0]), "photos/none.jpg"])
    assert r.exit_code == 1 and "skipped photos/none.jpg: image file not found" in r.stdout, r.output
    assert "2 images: 1 read, 1 unreadable (skipped)" in r.stdout


def test_several_sources_refuse_single_image_options_in_one_line(tmp_path, monkeypatch, astronaut):
    _photos(tmp_path / "photos", astronaut, 2)
    monkeypatch.chdir(tmp_path)
    for args, expected in ((["photos", "--out", "x.png"], "error: photos: is a folder, expected a file (--out"),
                           (["photos/*.jpg", "--pts", "f.json"], "error: --pts: several images get one picture each"),
                           (["photos", "clip.mp4"], "error: SOURCE clip.mp4: a video or camera goes alone"),
                           (["photos/*.png"], "error: photos/*.png: no image file matches this pattern")):
        r = CliRunner().invoke(main, ["predict", str(MODEL), *args])
        lines = r.output.strip().splitlines()
        assert r.exit_code == 2 and len(lines) == 1 and lines[0].startswith(expected), (args, r.output)
    assert not (tmp_path / "runs").exists()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="$DISPLAY is how Linux says there is a display")
@pytest.mark.parametrize("source", ["0", "photos", "photos/photo_00.jpg"])
def test_show_without_a_display_says_so_in_one_line_before_any_work(tmp_path, monkeypatch, astronaut, source):
    _photos(tmp_path / "photos", astronaut, 1)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    r = CliRunner().invoke(main, ["predict", str(MODEL), source, "--show"])
    assert r.exit_code == 2 and r.output.strip().splitlines() == [
        "error: --show: no display to open a window on ($DISPLAY is not set); run without --show (the annotated "
        "pictures and video are written all the same)"], r.output
    assert not (tmp_path / "runs").exists()


def test_show_where_opencv_cannot_open_a_window_says_so_in_one_line(tmp_path, monkeypatch, astronaut):
    _photos(tmp_path / "photos", astronaut, 1)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DISPLAY", ":99")

    def no_window(*args, **kwargs):
        raise cv2.error("OpenCV(5.1.0) window.cpp:1: error: (-2:Unspecified error) The function is not "
                        "implemented. Rebuild the library with GUI support")

    monkeypatch.setattr(cv2, "namedWindow", no_window)
    r = CliRunner().invoke(main, ["predict", str(MODEL), "photos", "--show"])
    lines = r.output.strip().splitlines()
    assert r.exit_code == 2 and len(lines) == 1, r.output
    assert lines[0].startswith("error: --show: OpenCV cannot open a window here (") and "GUI support" in lines[0]
    assert not list((tmp_path / "runs" / "predict").glob("*/*.png"))


def test_preview_draws_stage_times_and_stops_on_q(monkeypatch, astronaut):
    """The window's content without a window: stage milliseconds and frame rate drawn, q (or Esc) ends the run."""
    from edgekd import Landmarker
    from edgekd.runtime import preview

    shown, keys = [], iter([ord("x"), ord("q")])
    monkeypatch.setenv("DISPLAY", ":99")
    monkeypatch.setattr(cv2, "namedWindow", lambda *a, **k: None)
    monkeypatch.setattr(cv2, "imshow", lambda title, bgr: shown.append(bgr.copy()))
    monkeypatch.setattr(cv2, "waitKey", lambda ms: next(keys))
    monkeypatch.setattr(cv2, "getWindowProperty", lambda *a: 1.0)
    monkeypatch.setattr(cv2, "destroyWindow", lambda *a: None)
    with Landmarker(MODEL) as lm:
        (result,) = lm.predict(astronaut)
    faces = [f.face for f in result.faces]
    line = preview.stage_line(faces, 2.5)
    assert re.fullmatch(r"detector [\d.]+ ms \| crop [\d.]+ \| model [\d.]+ \| inverse [\d.]+ \| frame 2.50 ms", line)
    with preview.Preview() as p:
        assert p.show(result.plot(), faces) is True
        assert p.show(result.plot(), faces) is False and p.fps is not None
    assert len(shown) == 2 and np.any(shown[0][:40] != cv2.cvtColor(result.plot(), cv2.COLOR_RGB2BGR)[:40])


def _clip(path: Path, astronaut, frames: int) -> Path:
    bgr = cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (512, 512))
    for k in range(frames):
        writer.write(np.ascontiguousarray(np.roll(bgr, 2 * k, axis=1)))
    writer.release()
    return path


def test_show_on_a_video_shows_every_frame_until_q(tmp_path, monkeypatch, astronaut):
    """`predict clip.mp4 --show` as a user at a desktop runs it (the window's functions stood in for): every frame
    is shown with its stage times, q on the third ends the run, and what was recorded is written."""
    clip = _clip(tmp_path / "clip.mp4", astronaut, 10)
    shown, keys = [], iter([-1, -1, ord("q")])
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DISPLAY", ":99")
    monkeypatch.setattr(cv2, "namedWindow", lambda *a, **k: None)
    monkeypatch.setattr(cv2, "imshow", lambda title, bgr: shown.append(title))
    monkeypatch.setattr(cv2, "waitKey", lambda ms: next(keys))
    monkeypatch.setattr(cv2, "getWindowProperty", lambda *a: 1.0)
    monkeypatch.setattr(cv2, "destroyWindow", lambda *a: shown.append("closed"))
    r = CliRunner().invoke(main, ["predict", str(MODEL), str(clip), "--show"])
    assert r.exit_code == 0, r.output
    assert len(shown) == 4 and shown[-1] == "closed"
    assert r.stdout.startswith(f"3 frames of {clip}") and "faces in 3 frames" in r.stdout
    cap = cv2.VideoCapture("runs/predict/exp/clip.mp4")
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    cap.release()


def test_track_reads_a_video_file(tmp_path, astronaut):
    from edgekd import Landmarker

    clip = _clip(tmp_path / "clip.mp4", astronaut, 8)
    with Landmarker(MODEL) as lm:
        results = list(lm.track(str(clip), max_frames=6))
    assert [r.source for r in results] == [f"frame {k}" for k in range(6)]
    assert all(len(r.faces) == 1 and r.faces[0].track_id == 0 for r in results)
