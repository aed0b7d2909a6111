package org.edgekd.demo

import android.content.Context
import android.graphics.Bitmap
import com.google.mediapipe.framework.image.BitmapImageBuilder
import com.google.mediapipe.tasks.core.BaseOptions
import com.google.mediapipe.tasks.core.Delegate
import com.google.mediapipe.tasks.vision.core.RunningMode
import com.google.mediapipe.tasks.vision.facedetector.FaceDetector
import java.io.Closeable

/**
 * The MediaPipe Tasks face detector with BlazeFace short range (the model file the desktop runtime uses, copied
 * into the assets by the copyModelAssets Gradle task). IMAGE mode for evaluation, VIDEO mode for the camera
 * (synchronous, so its time is measured like the other stages).
 */
class FaceStage(context: Context, private val mode: RunningMode, val minConfidence: Float = 0.5f) : Closeable {
    /**
     * A detection: box in image pixels (x, y = top-left corner), its score and BlazeFace's 6 keypoints as x0, y0, ...
     * x5, y5 in image pixels (eyes, nose tip, mouth, ear tragions), null when the detector gave none.
     */
    class Face(val x: Float, val y: Float, val w: Float, val h: Float, val score: Float, val keypoints: FloatArray? = null)

    private val detector: FaceDetector

    init {
        val base = BaseOptions.builder().setModelAssetPath(MODEL_ASSET).setDelegate(Delegate.CPU).build()
        val options = FaceDetector.FaceDetectorOptions.builder()
            .setBaseOptions(base)
            .setRunningMode(mode)
            .setMinDetectionConfidence(minConfidence)
            .build()
        detector = FaceDetector.createFromOptions(context, options)
    }

    /** Faces in an ARGB_8888 bitmap; [timestampMs] must increase from call to call in VIDEO mode. */
    fun detect(bitmap: Bitmap, timestampMs: Long = 0L): List<Face> {
        val image = BitmapImageBuilder(bitmap).build()
        val result = if (mode == RunningMode.VIDEO) detector.detectForVideo(image, timestampMs) else detector.detect(image)
        return result.detections().map { d ->
            val r = d.boundingBox()
            // keypoints come normalised to the image; CropSpec wants pixels, as the desktop's Detection has them
            val kps = d.keypoints().orElse(null)?.takeIf { it.size == 6 }?.let { k ->
                FloatArray(12) { i -> if (i % 2 == 0) k[i / 2].x() * bitmap.width else k[i / 2].y() * bitmap.height }
            }
            Face(r.left, r.top, r.width(), r.height(), d.categories().firstOrNull()?.score() ?: 0f, kps)
        }
    }

    override fun close() = detector.close()

    companion object {
        const val MODEL_ASSET = "face_detection_short_range.tflite"
    }
}
