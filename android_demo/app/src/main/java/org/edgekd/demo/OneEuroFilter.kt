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
 * classes) so it can be compiled and checked off-device.
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
