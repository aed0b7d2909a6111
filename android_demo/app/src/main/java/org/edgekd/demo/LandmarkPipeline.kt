package org.edgekd.demo

import android.graphics.Bitmap
import java.io.Closeable

/**
 * Detector, crop and landmark model in a row, timed stage by stage; the same code serves the camera preview (through
 * [frame] and the [FaceTracker]) and the evaluation mode ([process]), so the numbers `edgekd bench --device pixel`
 * reports are those of the demo. [detector] may be null when every call passes a crop box (evaluation protocol "gt").
 */
class LandmarkPipeline(val detector: FaceStage?, val model: LandmarkModel) : Closeable {
    class Result(
        /** x0, y0, x1, y1, ... in image pixels, or null when no face was found. */
        val points: FloatArray?,
        val face: FaceStage.Face?,
        /** The crop square cx, cy, side the model saw. */
        val box: DoubleArray?,
        val faces: Int,
        val detectorMs: Double?,
        val cropMs: Double?,
        val inferenceMs: Double?,
        val landmarksMs: Double?,
        val totalMs: Double
    )

    private val spec = model.meta.crop
    private var pixels = IntArray(0)

    /**
     * Landmarks of one face in [bitmap] (ARGB_8888). With [cropBox] (cx, cy, side) the detector is skipped and that
     * square is the crop box. Otherwise the highest-scoring detection is used or, given [matchBox] (x, y, w, h: an
     * annotated face's landmark box), the detection overlapping it most, none when none overlaps (as the desktop
     * benchmark's detector protocol scores it).
     */
    fun process(bitmap: Bitmap, timestampMs: Long = 0L, matchBox: DoubleArray? = null, cropBox: DoubleArray? = null): Result {
        val t0 = System.nanoTime()
        var faces = 0
        var face: FaceStage.Face? = null
        var detectorMs: Double? = null
        val box: DoubleArray
        if (cropBox != null) {
            box = cropBox
        } else {
            val found = (detector ?: throw IllegalStateException("no face detector and no crop box")).detect(bitmap, timestampMs)
            detectorMs = ms(t0, System.nanoTime())
            faces = found.size
            face = choose(found, matchBox)
                ?: return Result(null, null, null, faces, detectorMs, null, null, null, ms(t0, System.nanoTime()))
            box = spec.boxFromDetector(face.x.toDouble(), face.y.toDouble(), face.w.toDouble(), face.h.toDouble(), face.keypoints)
        }
        val t1 = System.nanoTime()
        loadPixels(bitmap)
        val loadMs = ms(t1, System.nanoTime())
        val times = DoubleArray(3)
        val points = landmarks(bitmap.width, bitmap.height, box, times)
        val t4 = System.nanoTime()
        return Result(points, face, box, faces, detectorMs, loadMs + times[0], times[1], ms(t1, t4), ms(t0, t4))
    }

    /**
     * A camera frame for the [FaceTracker]: the detector's boxes as crop squares (best score first) and the model's
     * points for a crop square, each stage's time summed over the frame for the on-screen statistics.
     */
    inner class Frame(private val bitmap: Bitmap, private val timestampMs: Long) : FaceTracker.Frame {
        override val width = bitmap.width
        override val height = bitmap.height
        private val start = System.nanoTime()
        private var loaded = false
        private val times = DoubleArray(3) // crop, inference, landmarks (crop + inference + decoding)
        private var detectorMs: Double? = null
        private var faces = 0

        override fun detect(): List<DoubleArray> {
            val t0 = System.nanoTime()
            val found = (detector ?: throw IllegalStateException("no face detector")).detect(bitmap, timestampMs)
            detectorMs = ms(t0, System.nanoTime())
            faces = found.size
            return found.sortedByDescending { it.score }
                .map { spec.boxFromDetector(it.x.toDouble(), it.y.toDouble(), it.w.toDouble(), it.h.toDouble(), it.keypoints) }
        }

        override fun landmarks(box: DoubleArray): FloatArray {
            if (!loaded) {
                loadPixels(bitmap)
                loaded = true
            }
            return this@LandmarkPipeline.landmarks(width, height, box, times)
        }

        /** The frame as a [Result] of the face shown (its points and crop square). */
        fun result(points: FloatArray?, box: DoubleArray?): Result = Result(
            points, null, box, faces, detectorMs, times[0], times[1], times[2], ms(start, System.nanoTime())
        )
    }

    fun frame(bitmap: Bitmap, timestampMs: Long) = Frame(bitmap, timestampMs)

    private fun loadPixels(bitmap: Bitmap) {
        val w = bitmap.width
        val h = bitmap.height
        if (pixels.size != w * h) pixels = IntArray(w * h)
        bitmap.getPixels(pixels, 0, w, 0, 0, w, h)
    }

    /** Crop, model and decoding for one crop square of the loaded pixels; adds each stage's time to [times]. */
    private fun landmarks(w: Int, h: Int, box: DoubleArray, times: DoubleArray): FloatArray {
        val t1 = System.nanoTime()
        val matrix = spec.matrix(box)
        model.setInput(ImageWarp.warp(pixels, w, h, matrix, spec.inputSize))
        val t2 = System.nanoTime()
        val out = model.run()
        val t3 = System.nanoTime()
        val points = spec.decode(out, matrix)
        val t4 = System.nanoTime()
        times[0] += ms(t1, t2)
        times[1] += ms(t2, t3)
        times[2] += ms(t1, t4)
        return points
    }

    private fun choose(found: List<FaceStage.Face>, match: DoubleArray?): FaceStage.Face? {
        if (match == null) return found.maxByOrNull { it.score }
        var best: FaceStage.Face? = null
        var bestIou = 0.0
        for (f in found.sortedByDescending { it.score }) {
            val overlap = CropSpec.iou(doubleArrayOf(f.x.toDouble(), f.y.toDouble(), f.w.toDouble(), f.h.toDouble()), match)
            if (overlap > bestIou) {
                best = f
                bestIou = overlap
            }
        }
        return best
    }

    override fun close() {
        model.close()
        detector?.close()
    }

    private fun ms(from: Long, to: Long) = (to - from) / 1e6
}
