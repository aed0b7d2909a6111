package org.edgekd.demo

import kotlin.math.exp
import kotlin.math.hypot
import kotlin.math.ln
import kotlin.math.sqrt

/**
 * Tracks faces through camera frames: each crop follows the previous frame's landmarks, the face detector runs
 * every [redetectEvery] frames (to find faces and to confirm the tracked ones) and at once when a track fails the
 * plausibility test or its points leave the shape they had at its start ([maxDrift]: the detection restarts it),
 * and the points a user sees are smoothed with the [PoseShapeFilter]. With [anchor] each crop is
 * the detector's square that started the track moved with the landmarks (else the last landmark box); with
 * [predictMotion] it is carried one frame ahead by the face's averaged motion. The same logic, decision for
 * decision, as the desktop's `edgekd/runtime/tracker.py` (see its docstring for why these tests and limits); the
 * repository's tests drive both with one scripted sequence and compare every frame.
 *
 * Pure Kotlin (no Android classes): the camera, detector and model sit behind [Frame], so it compiles and runs off
 * the device. Boxes are crop squares {cx, cy, side} in image pixels; points are x0, y0, x1, y1, ...
 */
class FaceTracker(
    val redetectEvery: Int = 10,
    val maxFaces: Int = 1,
    var smoothing: Boolean = true,
    val minIou: Double = 0.3,
    val maxScaleChange: Double = 1.3,
    val maxShift: Double = 0.3,
    val predictMotion: Boolean = true,
    /** A detection confirming a track with a crop-square IoU below this restarts it from the detection's crop. */
    val reanchorIou: Double = 0.5,
    /** Cut each crop from the track's starting detector square moved with the points (tracker.py's anchor). */
    val anchor: Boolean = true,
    /** A track whose points leave the anchor's shape by more than this calls the detector and restarts (null: off). */
    val maxDrift: Double? = MAX_DRIFT
) {
    /** One camera frame: its size, the detector (crop squares from its boxes, best score first) and the model. */
    interface Frame {
        val width: Int
        val height: Int
        fun detect(): List<DoubleArray>
        fun landmarks(box: DoubleArray): FloatArray
    }

    class Tracked(
        val id: Int,
        /** Smoothed when [smoothing] is on; [rawPoints] are the model's. */
        val points: FloatArray,
        val rawPoints: FloatArray,
        /** The crop square this frame's points came from. */
        val box: DoubleArray,
        /** Whether a detection started or confirmed the track on this frame. */
        val detected: Boolean
    )

    private class Track(val id: Int, var box: DoubleArray, val filter: PoseShapeFilter) {
        /** The last frame's landmark box, and the averaged box motion per frame: dx, dy in sides, log scale. */
        var landmarkBox: DoubleArray? = null
        var motion: DoubleArray? = null

        /** The detector's square that (re)started the track and the points drawn in it. */
        var anchorBox: DoubleArray? = null
        var anchorPoints: FloatArray? = null

        /** This frame's points left the anchor's shape: the next detection restarts the track. */
        var drifted = false

        /** The anchor's square moved with the face to [points]; on the first frame the anchor is set (this crop). */
        fun anchored(points: FloatArray): DoubleArray {
            if (anchorBox == null) {
                anchorBox = box
                anchorPoints = points
            }
            return moveSquare(anchorBox!!, anchorPoints!!, points)
        }

        /**
         * How far [points] left the anchor's shape (tracker.py Track.drift): the RMS residual of the least-squares
         * similarity from the anchor's points to them, over their RMS distance from their centre; 0 with no anchor.
         */
        fun drift(points: FloatArray): Double {
            val q0 = Centred(anchorPoints ?: return 0.0).q
            val q1 = Centred(points).q
            var size = 0.0
            var norm = 0.0
            for (i in q1.indices) {
                size += q1[i] * q1[i]
                norm += q0[i] * q0[i]
            }
            val fit = similarity(q0, q1) ?: return 0.0
            if (!(size > 0.0)) return 0.0
            // a least-squares fit: what it leaves is the points' spread less the fitted copy's
            return sqrt(maxOf(0.0, size - (fit[0] * fit[0] + fit[1] * fit[1]) * norm) / size)
        }

        /** The next crop: this frame's landmark [next] carried one frame ahead by the averaged motion. */
        fun follow(next: DoubleArray, predict: Boolean) {
            val last = landmarkBox
            if (predict && last != null) {
                val fresh = doubleArrayOf((next[0] - last[0]) / next[2], (next[1] - last[1]) / next[2],
                    ln(next[2] / last[2]))
                val old = motion ?: fresh
                val m = DoubleArray(3) {
                    (MOTION_EMA * fresh[it] + (1.0 - MOTION_EMA) * old[it]).coerceIn(-MAX_MOTION, MAX_MOTION)
                }
                motion = m
                box = doubleArrayOf(next[0] + m[0] * next[2], next[1] + m[1] * next[2], next[2] * exp(m[2]))
            } else {
                box = next
            }
            landmarkBox = next
        }

        /** A detection (re)starts the track: no motion known. */
        fun restart(square: DoubleArray) {
            box = square
            landmarkBox = null
            motion = null
            anchorBox = null
            anchorPoints = null
            drifted = false
        }
    }

    /** Points x0, y0, x1, ... as their centre ([x], [y]) and their offsets from it ([q]). */
    private class Centred(points: FloatArray) {
        val x: Double
        val y: Double
        val q: DoubleArray

        init {
            val n = points.size / 2
            var cx = 0.0
            var cy = 0.0
            for (i in 0 until n) {
                cx += points[2 * i]
                cy += points[2 * i + 1]
            }
            x = cx / n
            y = cy / n
            q = DoubleArray(2 * n) { points[it] - if (it % 2 == 0) x else y }
        }
    }

    private class Candidate(val track: Track, val points: FloatArray, val cropBox: DoubleArray, val box: DoubleArray,
                            var detected: Boolean)

    private var tracks = mutableListOf<Track>()
    private var nextId = 0
    private var sinceDetect = 0
    var detectorRuns = 0
        private set
    var lostImplausible = 0
        private set
    var lostUnconfirmed = 0
        private set

    /** Frames where a track's shape drift called the detector. */
    var drifted = 0
        private set

    fun reset() {
        tracks = mutableListOf()
        sinceDetect = 0
    }

    fun update(frame: Frame, timeSeconds: Double): List<Tracked> {
        sinceDetect += 1
        var detect = tracks.isEmpty() || sinceDetect >= redetectEvery
        var kept = mutableListOf<Candidate>()
        val lost = mutableListOf<Track>()
        for (track in tracks) {
            val points = frame.landmarks(track.box)
            val box = CropSpec.boxFromPoints(points)
            if (plausible(track.box, box, frame.width, frame.height)) {
                kept.add(Candidate(track, points, track.box, box, false))
                val limit = maxDrift
                if (anchor && limit != null && track.drift(points) > limit) {
                    track.drifted = true
                    detect = true
                    drifted += 1
                }
            } else {
                lost.add(track)
                lostImplausible += 1
                detect = true
            }
        }
        if (detect) {
            val detections = frame.detect()
            detectorRuns += 1
            sinceDetect = 0
            kept = confirm(frame, kept, lost, detections)
        }
        tracks = kept.map { it.track }.toMutableList()
        return kept.map { c ->
            c.track.follow(if (anchor) c.track.anchored(c.points) else c.box, predictMotion)
            val shown = if (smoothing) c.track.filter.filter(c.points, timeSeconds, c.box[2]) else c.points
            Tracked(c.track.id, shown, c.points, c.cropBox, c.detected)
        }
    }

    /** Greedy matching by IoU (best overlap first, then track and detection order), as tracker.py's _confirm. */
    private fun confirm(frame: Frame, kept: MutableList<Candidate>, lost: MutableList<Track>,
                        detections: List<DoubleArray>): MutableList<Candidate> {
        val pairs = ArrayList<Triple<Double, Int, Int>>()
        for (i in kept.indices) {
            for (j in detections.indices) pairs.add(Triple(squareIou(kept[i].track.box, detections[j]), i, j))
        }
        pairs.sortWith(compareBy<Triple<Double, Int, Int>>({ -it.first }, { it.second }, { it.third }))
        val usedTracks = sortedSetOf<Int>()
        val usedDetections = HashSet<Int>()
        for ((overlap, i, j) in pairs) {
            if (overlap >= minIou && i !in usedTracks && j !in usedDetections) {
                usedTracks.add(i)
                usedDetections.add(j)
                if (overlap < reanchorIou || kept[i].track.drifted) {
                    val track = kept[i].track
                    val points = frame.landmarks(detections[j])
                    track.restart(detections[j])
                    kept[i] = Candidate(track, points, detections[j], CropSpec.boxFromPoints(points), true)
                }
                kept[i].detected = true
            }
        }
        lostUnconfirmed += kept.size - usedTracks.size
        val out = usedTracks.map { kept[it] }.toMutableList()
        for (j in detections.indices) {
            if (j in usedDetections || out.size >= maxFaces) continue
            val square = detections[j]
            val points = frame.landmarks(square)
            var previous: Track? = null // the lost track overlapping most (the first of equals)
            for (t in lost) {
                if (previous == null || squareIou(t.box, square) > squareIou(previous.box, square)) previous = t
            }
            val track = if (previous != null && squareIou(previous.box, square) >= minIou) {
                lost.remove(previous)
                previous.restart(square)
                previous
            } else {
                Track(nextId++, square, PoseShapeFilter())
            }
            out.add(Candidate(track, points, square, CropSpec.boxFromPoints(points), true))
        }
        return out
    }

    /** Whether landmarks predicted in [crop] (landmark box [box]) still describe a face the next crop can follow. */
    private fun plausible(crop: DoubleArray, box: DoubleArray, width: Int, height: Int): Boolean {
        if (box[2].isNaN() || box[2].isInfinite() || box[2] <= 4.0 || crop[2] <= 0.0) return false
        val ratio = box[2] / crop[2]
        return ratio >= 1.0 / maxScaleChange && ratio <= maxScaleChange &&
            hypot(box[0] - crop[0], box[1] - crop[1]) <= maxShift * crop[2] &&
            box[0] >= 0 && box[0] < width && box[1] >= 0 && box[1] < height
    }

    companion object {
        /** Weight of the newest frame's motion in the running average (tracker.py MOTION_EMA). */
        const val MOTION_EMA = 0.5

        /** The most the crop is carried ahead per frame, in box sides and log scale (tracker.py MAX_MOTION). */
        const val MAX_MOTION = 0.1

        /** The most a track's points may leave the anchor's shape before the detector runs (tracker.py MAX_DRIFT). */
        const val MAX_DRIFT = 0.06

        /**
         * [square] moved by the least-squares similarity from the points [ref] to [points] (tracker.py move_square):
         * its centre keeps its place relative to the points, turned and scaled with them; its side scales with them.
         */
        fun moveSquare(square: DoubleArray, ref: FloatArray, points: FloatArray): DoubleArray {
            val p0 = Centred(ref)
            val p1 = Centred(points)
            val fit = similarity(p0.q, p1.q) ?: return square.copyOf() // reference points all at one place: no motion
            val a = fit[0]
            val b = fit[1]
            val dx = square[0] - p0.x
            val dy = square[1] - p0.y
            return doubleArrayOf(p1.x + a * dx - b * dy, p1.y + b * dx + a * dy, square[2] * hypot(a, b))
        }

        /** IoU of two {cx, cy, side} squares. */
        fun squareIou(a: DoubleArray, b: DoubleArray): Double = CropSpec.iou(
            doubleArrayOf(a[0] - a[2] / 2, a[1] - a[2] / 2, a[2], a[2]),
            doubleArrayOf(b[0] - b[2] / 2, b[1] - b[2] / 2, b[2], b[2])
        )
    }
}
