package org.edgekd.demo

import kotlin.math.PI
import kotlin.math.abs

/**
 * One Euro filter (Casiez, Roussel and Vogel, CHI 2012) over all landmark coordinates of a face at once.
 *
 * A landmark model run frame by frame jitters by a pixel or two even on a still face; a fixed low-pass filter would
 * remove that but lag behind a moving head. The One Euro filter raises its cutoff with the (low-passed) speed, so a
 * still face is smoothed hard and a moving one is followed closely. Speeds are divided by the face size, so one set of
 * parameters works near and far from the camera: [beta] is per face-size-per-second. Pure Kotlin (no Android
 * classes) so it can be compiled and checked off-device. The tracker smooths with [PoseShapeFilter], which runs one
 * of these on the face's pose and one on its shape, each with its own constants.
 */
class OneEuroFilter(
    var minCutoff: Double = 0.5,
    var beta: Double = 30.0,
    var dCutoff: Double = 2.0,
    /** A gap longer than this (seconds) starts over instead of smoothing across it. */
    var maxGap: Double = 0.5
) {
    private var last: DoubleArray? = null
    private var lastSpeed: DoubleArray? = null
    private var lastTime = 0.0

    fun reset() {
        last = null
        lastSpeed = null
    }

    /** Smoothed copy of [values] observed at [timeSeconds]; [scale] is the face size in the values' unit. */
    fun filter(values: FloatArray, timeSeconds: Double, scale: Double = 1.0): FloatArray {
        val previous = last
        val previousSpeed = lastSpeed
        val dt = timeSeconds - lastTime
        if (previous == null || previousSpeed == null || previous.size != values.size || dt <= 0.0 || dt > maxGap) {
            last = DoubleArray(values.size) { values[it].toDouble() }
            lastSpeed = DoubleArray(values.size)
            lastTime = timeSeconds
            return values.copyOf()
        }
        val size = if (scale > 0.0) scale else 1.0
        val aSpeed = alpha(dCutoff, dt)
        val out = FloatArray(values.size)
        for (i in values.indices) {
            val x = values[i].toDouble()
            val speed = aSpeed * (x - previous[i]) / dt + (1.0 - aSpeed) * previousSpeed[i]
            val a = alpha(minCutoff + beta * abs(speed) / size, dt)
            val smoothed = a * x + (1.0 - a) * previous[i]
            previous[i] = smoothed
            previousSpeed[i] = speed
            out[i] = smoothed.toFloat()
        }
        lastTime = timeSeconds
        return out
    }

    private fun alpha(cutoff: Double, dt: Double): Double {
        val tau = 1.0 / (2.0 * PI * cutoff)
        return 1.0 / (1.0 + tau / dt)
    }
}

/**
 * Smooths a face's points as a pose (centre cx, cy and similarity a, b: point = centre + [[a, -b], [b, a]] shape) and
 * a shape in the face's own frame, each with its own [OneEuroFilter]; a line-by-line port of tracker.py's
 * PoseShapeFilter (see its module docstring for the measurements).
 *
 * A camera or head moving carries the whole face, which the pose filter follows almost unfiltered (a high beta
 * opens it as soon as the face moves); most of a model's frame-to-frame noise is in the shape, which does not move
 * with the face and whose filter opens as soon as the shape changes (an expression). The shape is fitted to the
 * previous smoothed shape (least squares over a similarity); on a restart (a gap, or a previous shape with every
 * point at one place) it is the points less their centre over the face size.
 */
class PoseShapeFilter(
    private val pose: OneEuroFilter = OneEuroFilter(POSE_MIN_CUTOFF, POSE_BETA, POSE_D_CUTOFF),
    private val shapeFilter: OneEuroFilter = OneEuroFilter(SHAPE_MIN_CUTOFF, SHAPE_BETA, SHAPE_D_CUTOFF)
) {
    private var shape: DoubleArray? = null
    private var lastTime = 0.0

    fun reset() {
        shape = null
    }

    /** Smoothed copy of [values] (x0, y0, x1, ...) observed at [timeSeconds]; [scale] is the face size. */
    fun filter(values: FloatArray, timeSeconds: Double, scale: Double = 1.0): FloatArray {
        val n = values.size / 2
        val size = if (scale > 0.0) scale else 1.0
        var cx = 0.0
        var cy = 0.0
        for (i in 0 until n) {
            cx += values[2 * i].toDouble()
            cy += values[2 * i + 1].toDouble()
        }
        cx /= n
        cy /= n
        val q = DoubleArray(2 * n) { values[it].toDouble() - if (it % 2 == 0) cx else cy }
        val ref = shape
        val dt = timeSeconds - lastTime
        var fit: DoubleArray? = null
        if (ref != null && ref.size == q.size && dt > 0.0 && dt <= shapeFilter.maxGap) fit = similarity(ref, q)
        if (fit == null) {
            pose.reset()
            shapeFilter.reset()
            fit = doubleArrayOf(size, 0.0)
        }
        var a = fit[0]
        var b = fit[1]
        val det = a * a + b * b
        val local = FloatArray(q.size) { // q through the inverse similarity
            val x = q[it - it % 2]
            val y = q[it - it % 2 + 1]
            (if (it % 2 == 0) (a * x + b * y) / det else (a * y - b * x) / det).toFloat()
        }
        val p = pose.filter(floatArrayOf(cx.toFloat(), cy.toFloat(), a.toFloat(), b.toFloat()), timeSeconds, size)
        val smoothed = shapeFilter.filter(local, timeSeconds, 1.0)
        shape = DoubleArray(smoothed.size) { smoothed[it].toDouble() }
        lastTime = timeSeconds
        a = p[2].toDouble()
        b = p[3].toDouble()
        return FloatArray(values.size) {
            val x = smoothed[it - it % 2].toDouble()
            val y = smoothed[it - it % 2 + 1].toDouble()
            (if (it % 2 == 0) p[0] + a * x - b * y else p[1] + b * x + a * y).toFloat()
        }
    }

    companion object {
        /** The pose filter's constants (tracker.py POSE_EURO), chosen on validation clips (benchmarks/tracking). */
        const val POSE_MIN_CUTOFF = 2.0
        const val POSE_BETA = 2000.0
        const val POSE_D_CUTOFF = 1.0

        /** The shape filter's constants (tracker.py SHAPE_EURO), chosen with the pose's: no lag behind expressions. */
        const val SHAPE_MIN_CUTOFF = 0.5
        const val SHAPE_BETA = 100.0
        const val SHAPE_D_CUTOFF = 8.0
    }
}

/**
 * The least-squares similarity {a, b} (q ~ [[a, -b], [b, a]] ref) between two centred point sets (x0, y0, x1, ...):
 * the zoom and roll from one to the other, the one fit behind both [PoseShapeFilter] and FaceTracker.moveSquare
 * (tracker.py similarity). Null when [ref]'s points all lie at one place, where no motion can be read.
 */
fun similarity(ref: DoubleArray, q: DoubleArray): DoubleArray? {
    var norm = 0.0
    var dot = 0.0
    var cross = 0.0
    for (i in 0 until ref.size / 2) {
        val rx = ref[2 * i]
        val ry = ref[2 * i + 1]
        norm += rx * rx + ry * ry
        dot += rx * q[2 * i] + ry * q[2 * i + 1]
        cross += rx * q[2 * i + 1] - ry * q[2 * i]
    }
    if (!(norm > 0.0)) return null
    return doubleArrayOf(dot / norm, cross / norm)
}
