"""`edgekd predict`: landmarks of every face in an image, a video or a camera stream."""
from __future__ import annotations

from pathlib import Path

import click

from edgekd.cli.app import RUNS, ThreadCounts, detector_backend_option, main, refine_option, run_dir_options
from edgekd.core.errors import OptionError
from edgekd.runtime.blazeface import RANGES as DETECTOR_RANGES
from edgekd.runtime.predictor import MAX_REFINE, TTA


@main.command(short_help="Landmarks of every face in an image, a video or a camera stream.")
@click.argument("model", type=click.Path())
@click.argument("source", required=False)
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
def predict(model, source, out, name, exist_ok, pts, detector, detector_backend, min_score, tiles, redetect_every,
            smooth, max_faces, max_frames, threads, tta, refine):
    """Landmarks of every face in SOURCE: an image, a video file, or a camera index (0, 1, ...), e.g.
    `edgekd predict models/300w/student_qat_int8.tflite group.jpg --pts faces.json`.

    Still images: detector -> crop from the model's metadata -> model -> image points, for every face. Video: faces
    are tracked (each crop from the previous frame's landmarks, the detector every --redetect-every frames or when a
    track is lost) and smoothed. Without SOURCE, scikit-image's astronaut photo (public domain) is used."""
    from edgekd.core.errors import check_range
    from edgekd.core.fileio import (check_no_file_in_the_way, check_output_dir, check_outside_inputs, mark_output_dir,
                                    next_run_dir)
    from edgekd.runtime.video import check_points_path, is_video

    check_range("--min-score", min_score, 0, 1)
    check_range("--tiles", tiles, 1, 8, integer=True)
    check_range("--redetect-every", redetect_every, 1, integer=True)
    check_range("--refine", refine, 0, MAX_REFINE, integer=True)
    for option, value in (("--max-faces", max_faces), ("--max-frames", max_frames)):
        if value is not None:
            check_range(option, value, 1, integer=True)
    if source is not None and str(source).strip() == "":
        raise OptionError("SOURCE '': expected an image, a video or a camera index (leave it out for the sample "
                          "photo)")
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
    detector_options = {"detector": detector, "min_score": min_score, "backend": detector_backend, "tiles": tiles}
    if video:
        from edgekd.runtime.video import predict_video

        r = predict_video(model, source, out, pts, detector_options, max_frames=max_frames, num_threads=threads,
                          flip=tta == "flip", tracking={"redetect_every": redetect_every, "max_faces": max_faces, "smoothing": smooth})
        if folder is not None and folder.is_dir():
            mark_output_dir(folder, "predict")
        ms = sorted(r.frame_ms)[len(r.frame_ms) // 2]
        click.echo(f"{r.frames} frames of {r.source} ({r.size[0]}x{r.size[1]}, {r.fps:.3g} fps): faces in "
                   f"{sum(n > 0 for n in r.faces_per_frame)} frames, detector on {r.stats.detector_runs}, "
                   f"{ms:.2f} ms per frame (median); wrote {', '.join(map(str, r.written))}")
        return
    from edgekd.runtime import predict_file, write_face_points
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
