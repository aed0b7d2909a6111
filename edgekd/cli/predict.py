"""`edgekd predict`: landmarks of every face in an image, many images, a video or a camera stream."""
from __future__ import annotations

from pathlib import Path

import click

from edgekd.cli.app import RUNS, ThreadCounts, detector_backend_option, main, refine_option, run_dir_options
from edgekd.core import logs
from edgekd.core.errors import FOLDER_NOT_FILE, OptionError, check_range
from edgekd.core.fileio import (check_no_file_in_the_way, check_output_dir, check_outside_inputs, mark_output_dir,
                                next_run_dir)
from edgekd.core.imageio import load_image
from edgekd.runtime import sources
from edgekd.runtime.api import Landmarker
from edgekd.runtime.batch import SUMMARY_CSV, SUMMARY_JSON, predict_many
from edgekd.runtime.blazeface import RANGES as DETECTOR_RANGES
from edgekd.runtime.predictor import MAX_REFINE, TTA, draw_faces, predict_file, sample_face, write_face_points
from edgekd.runtime.preview import Preview, check_display
from edgekd.runtime.video import check_points_path, is_video, predict_video


@main.command(short_help="Landmarks of every face in images, a video or a camera stream.")
@click.argument("model", type=click.Path())
@click.argument("source", nargs=-1)
@click.option("--out", type=click.Path(dir_okay=False),
              help="Annotated copy: an image (.png/.jpg) of a still, a video (.mp4/.avi) of a video or camera "
                   "(default: runs/predict/NAME/<source>.png or .mp4).")
@run_dir_options("predict")
@click.option("--pts", type=click.Path(dir_okay=False),
              help="Points. Still image: .pts, one file per face (FILE for one face; FILE_1.pts, FILE_2.pts, ... "
                   "for several), or one .json with every face's box, score and points. Video: .csv or .json, "
                   "every frame.")
@click.option("--detector", type=click.Choice(DETECTOR_RANGES), default="short-range", show_default=True,
              help="MediaPipe BlazeFace short-range (faces within ~2 m of a camera) or full-range (smaller, "
                   "more distant faces); many small faces in a large photo need --tiles.")
@detector_backend_option
@click.option("--min-score", type=float, default=0.5, show_default=True, help="Detector score threshold, 0 to 1.")
@click.option("--tiles", type=int, default=1, show_default=True,
              help="Also detect on NxN overlapping tiles, for small faces in large photos (N*N+1 detector calls); "
                   "1 to 8.")
@click.option("--redetect-every", type=int, default=10, show_default=True,
              help="Video: run the detector every N frames, and whenever a tracked face is lost.")
@click.option("--smooth/--no-smooth", default=True, show_default=True,
              help="Video: One Euro smoothing of the points (the Android demo's constants).")
@click.option("--max-faces", type=int, help="Video: track at most N faces (default: every face found).")
@click.option("--max-frames", type=int, help="Video: stop after N frames (a camera otherwise runs until Ctrl-C).")
@click.option("--threads", type=ThreadCounts(many=False), default=1, show_default=True,
              help="Interpreter threads.")
@click.option("--tta", type=click.Choice(TTA), default="none", show_default=True,
              help="Test-time augmentation: flip = also run the mirrored crop and average (two model runs per face).")
@refine_option
@click.option("--show", is_flag=True,
              help="Live preview: an OpenCV window with the landmarks, each stage's milliseconds and the frame rate "
                   "(q quits; a still image waits for a key).")
def predict(model, source, out, name, exist_ok, pts, detector, detector_backend, min_score, tiles, redetect_every,
            smooth, max_faces, max_frames, threads, tta, refine, show):
    """Landmarks of every face in SOURCE: an image, several images, a folder, a quoted glob pattern
    ('photos/*.jpg'), a video file or a camera index (0, 1, ...), e.g.
    `edgekd predict models/300w/kd_student_int8.tflite group.jpg --pts faces.json`.

    Still images: detector -> crop from the model's metadata -> model -> image points, for every face. Several
    images: one picture each in the run folder, and faces.json and faces.csv with every face; unreadable files are
    named and skipped, and the exit status is then 1. Video: faces are tracked (each crop the detector's square moved
    with the previous frame's landmarks, the detector every --redetect-every frames or when a track is lost) and
    smoothed. Without SOURCE,
    scikit-image's astronaut photo (public domain) is used."""
    if show:  # before any work: no model loaded, no folder made, when no window can open
        check_display()
    check_range("--min-score", min_score, 0, 1)
    check_range("--tiles", tiles, 1, 8, integer=True)
    check_range("--redetect-every", redetect_every, 1, integer=True)
    check_range("--refine", refine, 0, MAX_REFINE, integer=True)
    for option, value in (("--max-faces", max_faces), ("--max-frames", max_frames)):
        if value is not None:
            check_range(option, value, 1, integer=True)
    if any(str(s).strip() == "" for s in source):
        raise OptionError("SOURCE '': expected an image, a video or a camera index (leave it out for the sample "
                          "photo)")
    detector_options = {"detector": detector, "min_score": min_score, "backend": detector_backend, "tiles": tiles}
    if len(source) > 1 or (source and sources.is_many(source[0])):
        return _predict_many(model, source, out, pts, name, exist_ok, show,
                             {**detector_options, "threads": threads, "tta": tta, "refine": refine})
    source = source[0] if source else None
    video = is_video(source)
    if video and refine:
        raise OptionError("--refine: still images only (a tracked video frame is already cut from the previous "
                          "frame's points)")
    check_points_path(pts, video)
    folder = None
    if out is None:
        stem = f"camera{source}" if video and str(source).isdigit() else Path(source).stem if source else "astronaut"
        folder = check_output_dir(next_run_dir(RUNS / "predict", name, exist_ok), "predict", "--exist-ok")
        out = folder / f"{stem}{'.mp4' if video else '.png'}"
    for option, path in (("--out", out), ("--pts", pts)):
        if path is not None:
            check_outside_inputs(path, option, {"MODEL": model, "SOURCE": source})
            check_no_file_in_the_way(path, option)
    preview = Preview() if show else None
    try:
        if video:
            return _predict_video(model, source, out, pts, folder, preview, detector_options, max_frames, threads,
                                  tta, {"redetect_every": redetect_every, "max_faces": max_faces, "smoothing": smooth})
        _predict_image(model, source, out, pts, folder, preview, detector_options, threads, tta, refine)
    finally:
        if preview is not None:
            preview.close()


def _predict_video(model, source, out, pts, folder, preview, detector_options, max_frames, threads, tta, tracking):
    """A video file or a camera: tracked, written as a video and (--pts) per-frame points; one summary line."""
    r = predict_video(model, source, out, pts, detector_options, max_frames=max_frames, num_threads=threads,
                      flip=tta == "flip", tracking=tracking, on_frame=None if preview is None else preview.show)
    if folder is not None and folder.is_dir():
        mark_output_dir(folder, "predict")
    ms = sorted(r.frame_ms)[len(r.frame_ms) // 2]
    click.echo(f"{r.frames} frames of {r.source} ({r.size[0]}x{r.size[1]}, {r.fps:.3g} fps): faces in "
               f"{sum(n > 0 for n in r.faces_per_frame)} frames, detector on {r.stats.detector_runs}, "
               f"{ms:.2f} ms per frame (median); wrote {', '.join(map(str, r.written))}")


def _predict_image(model, source, out, pts, folder, preview, detector_options, threads, tta, refine):
    """One still image (or the astronaut sample): every face listed, the picture and (--pts) the points written."""
    detector, min_score = detector_options["detector"], detector_options["min_score"]
    faces = predict_file(model, source, out=out, num_threads=threads, detector=detector_options, flip=tta == "flip",
                         refine=refine)
    label, how = source or "the astronaut sample", f"{detector} detector, score >= {min_score:.2f}"
    try:
        written = write_face_points(pts, faces, str(label)) if pts else []
    except BaseException:  # no picture of this run without its points (e.g. --pts in a read-only folder)
        if faces and out is not None:
            Path(out).unlink(missing_ok=True)
        raise
    if folder is not None and folder.is_dir():
        mark_output_dir(folder, "predict")
    if not faces:
        click.echo(f"no face found in {label} ({how}): nothing written; for small or distant faces try "
                   f"--detector full-range, --tiles 3 or a lower --min-score")
        return
    click.echo(f"{len(faces)} face{'s' if len(faces) > 1 else ''} found in {label} ({how}):")
    for k, f in enumerate(faces, 1):
        x, y, w, h = f.detection.box
        click.echo(f"  face {k}: box x={x:.0f} y={y:.0f} w={w:.0f} h={h:.0f}, score {f.score:.3f}, "
                   f"{len(f.points)} points")
    click.echo(f"wrote {', '.join(map(str, [out, *written]))}")
    if preview is not None:  # after the lines above, so they are read while the picture is up
        image = load_image(source) if source is not None else sample_face()
        preview.show(draw_faces(image, faces), faces, wait_ms=0)


def _predict_many(model, given, out, pts, name, exist_ok, show, options) -> int:
    """Several images, a folder or a pattern: one picture per readable input in the run folder, faces.json and
    faces.csv of every face, unreadable files named and skipped. Returns the exit status: 1 if any was skipped."""
    for option, value in (("--out", out), ("--pts", pts)):
        if value is None:
            continue
        folders = [s for s in given if Path(s).is_dir()]
        if folders:  # --out names one picture: the user meant one image
            raise OptionError(f"{folders[0]}: {FOLDER_NOT_FILE} ({option} writes one image's results; leave {option} "
                              f"out to predict every image in the folder)")
        raise OptionError(f"{option}: several images get one picture each and {SUMMARY_JSON}, {SUMMARY_CSV} in the "
                          f"run folder (runs/predict/NAME); leave {option} out")
    videos = [s for s in given if is_video(s)]
    if videos:
        raise OptionError(f"SOURCE {videos[0]}: a video or camera goes alone, one per run (not with other sources)")
    items = sources.expand(list(given))
    folder = check_output_dir(next_run_dir(RUNS / "predict", name, exist_ok), "predict", "--exist-ok")
    check_outside_inputs(folder, "--name", {"MODEL": model})
    for item in items:  # only with --exist-ok: a new run folder holds no input
        check_outside_inputs(folder, "--name", {"SOURCE": item})
    preview = Preview() if show else None
    how = f"{options['detector']} detector, score >= {options['min_score']:.2f}"
    try:
        with Landmarker(model, options["detector"], options["min_score"], options["backend"], options["tiles"],
                        options["threads"], options["tta"], options["refine"]) as lm:
            r = predict_many(lm.predict(items, stream=True, skip_unreadable=True), len(items), folder,
                             progress=logs.show_progress(), echo=click.echo, preview=preview)
    finally:
        if preview is not None:
            preview.close()
        if folder.is_dir():
            mark_output_dir(folder, "predict")
    stopped = f", stopped (q) after {r.images + len(r.skipped)}" if r.stopped else ""
    click.echo(f"{len(items)} images: {r.images} read, {len(r.skipped)} unreadable (skipped){stopped}; "
               f"{r.faces} face{'' if r.faces == 1 else 's'} found ({how}), {r.without_face} "
               f"image{'' if r.without_face == 1 else 's'} without a face")
    click.echo(f"wrote {folder} ({r.images} picture{'' if r.images == 1 else 's'}, {SUMMARY_JSON}, {SUMMARY_CSV})")
    return 1 if r.skipped else 0
