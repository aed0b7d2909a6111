package org.edgekd.demo

import android.Manifest
import android.content.pm.PackageManager
import android.graphics.Bitmap
import android.graphics.Matrix
import android.os.Bundle
import android.os.SystemClock
import android.util.Log
import android.util.Size
import android.view.View
import android.widget.AdapterView
import android.widget.ArrayAdapter
import android.widget.Spinner
import android.widget.TextView
import androidx.activity.result.contract.ActivityResultContracts
import androidx.appcompat.app.AppCompatActivity
import androidx.appcompat.widget.SwitchCompat
import androidx.camera.core.CameraSelector
import androidx.camera.core.ImageAnalysis
import androidx.camera.core.ImageProxy
import androidx.camera.core.Preview
import androidx.camera.core.resolutionselector.AspectRatioStrategy
import androidx.camera.core.resolutionselector.ResolutionSelector
import androidx.camera.core.resolutionselector.ResolutionStrategy
import androidx.camera.lifecycle.ProcessCameraProvider
import androidx.camera.view.PreviewView
import androidx.core.content.ContextCompat
import com.google.mediapipe.tasks.vision.core.RunningMode
import java.io.FileInputStream
import java.nio.MappedByteBuffer
import java.nio.channels.FileChannel
import java.util.Locale
import java.util.concurrent.ExecutorService
import java.util.concurrent.Executors

/**
 * Live demo: front camera, MediaPipe face detector, the edgekd landmark model from the assets (chosen in the
 * spinner; its metadata gives the crop and scheme), landmarks drawn over the preview, per-stage times, GPU delegate
 * and thread count switches. The face is tracked ([FaceTracker]: the detector's square moved with the previous
 * frame's landmarks, the detector every 10th frame or when the track is lost) and smoothed with the One Euro
 * filter (on by default, switch "Smooth"). All model work runs on one analysis thread.
 */
class MainActivity : AppCompatActivity() {
    private lateinit var previewView: PreviewView
    private lateinit var overlay: OverlayView
    private lateinit var statsView: TextView
    private lateinit var modelSpinner: Spinner
    private lateinit var threadSpinner: Spinner
    private lateinit var smoothSwitch: SwitchCompat
    private lateinit var gpuSwitch: SwitchCompat

    private val analysisExecutor: ExecutorService = Executors.newSingleThreadExecutor()
    // Touched only on the analysis thread.
    private var pipeline: LandmarkPipeline? = null
    private var pipelineError: String? = null
    private val tracker = FaceTracker(redetectEvery = REDETECT_EVERY, maxFaces = 1)
    private val stats = StageStats()
    private var lastTimestamp = 0L

    @Volatile private var smoothing = true
    @Volatile private var useFrontCamera = true

    private val askCamera = registerForActivityResult(ActivityResultContracts.RequestPermission()) { granted ->
        if (granted) startCamera() else statsView.text = getString(R.string.camera_denied)
    }

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_main)
        previewView = findViewById(R.id.preview)
        overlay = findViewById(R.id.overlay)
        statsView = findViewById(R.id.stats)
        modelSpinner = findViewById(R.id.model)
        threadSpinner = findViewById(R.id.threads)
        smoothSwitch = findViewById(R.id.smoothing)
        gpuSwitch = findViewById(R.id.gpu)

        val models = landmarkModels()
        if (models.isEmpty()) {
            statsView.text = getString(R.string.no_models)
        }
        modelSpinner.adapter = ArrayAdapter(this, android.R.layout.simple_spinner_dropdown_item, models)
        val threadChoices = listOf(1, 2, 4, 6, 8)
        threadSpinner.adapter = ArrayAdapter(this, android.R.layout.simple_spinner_dropdown_item, threadChoices.map { "$it threads" })
        threadSpinner.setSelection(threadChoices.indexOf(DEFAULT_THREADS))
        val rebuild = object : AdapterView.OnItemSelectedListener {
            override fun onItemSelected(parent: AdapterView<*>?, view: View?, position: Int, id: Long) = reloadPipeline()
            override fun onNothingSelected(parent: AdapterView<*>?) = Unit
        }
        modelSpinner.onItemSelectedListener = rebuild
        threadSpinner.onItemSelectedListener = rebuild
        gpuSwitch.setOnCheckedChangeListener { _, _ -> reloadPipeline() }
        smoothSwitch.isChecked = true
        smoothSwitch.setOnCheckedChangeListener { _, on -> smoothing = on }

        if (ContextCompat.checkSelfPermission(this, Manifest.permission.CAMERA) == PackageManager.PERMISSION_GRANTED) {
            startCamera()
        } else {
            askCamera.launch(Manifest.permission.CAMERA)
        }
    }

    override fun onDestroy() {
        super.onDestroy()
        analysisExecutor.execute {
            pipeline?.close()
            pipeline = null
        }
        analysisExecutor.shutdown()
    }

    /** Landmark models bundled by the copyModelAssets Gradle task (every .tflite but the face detector). */
    private fun landmarkModels(): List<String> =
        (assets.list("") ?: emptyArray()).filter { it.endsWith(".tflite") && it != FaceStage.MODEL_ASSET }.sorted()

    private fun reloadPipeline() {
        val model = modelSpinner.selectedItem as String? ?: return
        val threads = listOf(1, 2, 4, 6, 8)[threadSpinner.selectedItemPosition.coerceAtLeast(0)]
        val gpu = gpuSwitch.isChecked
        analysisExecutor.execute {
            pipeline?.close()
            pipeline = null
            pipelineError = null
            tracker.reset()
            stats.clear()
            var landmarks: LandmarkModel? = null
            try {
                landmarks = LandmarkModel(mapAsset(model), model, threads, gpu)
                pipeline = LandmarkPipeline(FaceStage(this, RunningMode.VIDEO), landmarks)
            } catch (e: Exception) {
                landmarks?.close()
                Log.e(TAG, "cannot load $model", e)
                pipelineError = "$model: ${e.message}"
            }
        }
    }

    /** Needs the asset stored uncompressed (androidResources.noCompress += "tflite"). */
    private fun mapAsset(name: String): MappedByteBuffer =
        assets.openFd(name).use { fd ->
            FileInputStream(fd.fileDescriptor).use { stream ->
                stream.channel.map(FileChannel.MapMode.READ_ONLY, fd.startOffset, fd.declaredLength)
            }
        }

    private fun startCamera() {
        val providerFuture = ProcessCameraProvider.getInstance(this)
        providerFuture.addListener({
            val provider = providerFuture.get()
            // Preview and analysis share the 4:3 aspect ratio so the overlay's fill-centre mapping matches the preview.
            val selector = ResolutionSelector.Builder()
                .setAspectRatioStrategy(AspectRatioStrategy.RATIO_4_3_FALLBACK_AUTO_STRATEGY)
                .setResolutionStrategy(
                    ResolutionStrategy(Size(640, 480), ResolutionStrategy.FALLBACK_RULE_CLOSEST_HIGHER_THEN_LOWER)
                )
                .build()
            val preview = Preview.Builder()
                .setResolutionSelector(ResolutionSelector.Builder()
                    .setAspectRatioStrategy(AspectRatioStrategy.RATIO_4_3_FALLBACK_AUTO_STRATEGY).build())
                .build()
            preview.setSurfaceProvider(previewView.surfaceProvider)
            val analysis = ImageAnalysis.Builder()
                .setResolutionSelector(selector)
                .setBackpressureStrategy(ImageAnalysis.STRATEGY_KEEP_ONLY_LATEST)
                .setOutputImageFormat(ImageAnalysis.OUTPUT_IMAGE_FORMAT_RGBA_8888)
                .build()
            analysis.setAnalyzer(analysisExecutor) { proxy -> analyze(proxy) }
            val camera = if (provider.hasCamera(CameraSelector.DEFAULT_FRONT_CAMERA)) {
                CameraSelector.DEFAULT_FRONT_CAMERA
            } else {
                CameraSelector.DEFAULT_BACK_CAMERA
            }
            useFrontCamera = camera == CameraSelector.DEFAULT_FRONT_CAMERA
            provider.unbindAll()
            provider.bindToLifecycle(this, camera, preview, analysis)
        }, ContextCompat.getMainExecutor(this))
    }

    private fun analyze(proxy: ImageProxy) {
        val frameStart = System.nanoTime()
        val upright: Bitmap = try {
            val raw = proxy.toBitmap()
            val rotation = proxy.imageInfo.rotationDegrees
            if (rotation == 0) raw else
                Bitmap.createBitmap(raw, 0, 0, raw.width, raw.height, Matrix().apply { postRotate(rotation.toFloat()) }, false)
        } finally {
            proxy.close()
        }
        val p = pipeline
        if (p == null) {
            val message = pipelineError ?: getString(R.string.loading)
            runOnUiThread { statsView.text = message; overlay.show(null, null, 1, 1, false) }
            return
        }
        // VIDEO mode needs strictly increasing timestamps.
        val timestamp = maxOf(SystemClock.uptimeMillis(), lastTimestamp + 1)
        lastTimestamp = timestamp
        tracker.smoothing = smoothing
        val frame = p.frame(upright, timestamp)
        val result = try {
            val face = tracker.update(frame, timestamp / 1000.0).firstOrNull()
            frame.result(face?.points, face?.box)
        } catch (e: Exception) {
            Log.e(TAG, "frame failed", e)
            runOnUiThread { statsView.text = e.message }
            return
        }
        val points = result.points
        stats.add(result, (System.nanoTime() - frameStart) / 1e6)
        val text = stats.summary(p.model)
        val mirror = useFrontCamera
        runOnUiThread {
            statsView.text = text
            overlay.show(points, result.box, upright.width, upright.height, mirror)
        }
    }

    /** Medians over the last frames, so the numbers on screen are readable. */
    private class StageStats(private val window: Int = 30) {
        private val detector = ArrayDeque<Double>()
        private val landmarks = ArrayDeque<Double>()
        private val inference = ArrayDeque<Double>()
        private val total = ArrayDeque<Double>()
        private val frame = ArrayDeque<Double>()
        private val frameTimes = ArrayDeque<Long>()

        fun clear() {
            listOf(detector, landmarks, inference, total, frame).forEach { it.clear() }
            frameTimes.clear()
        }

        fun add(r: LandmarkPipeline.Result, frameMs: Double) {
            r.detectorMs?.let { push(detector, it) }
            r.landmarksMs?.let { push(landmarks, it) }
            r.inferenceMs?.let { push(inference, it) }
            push(total, r.totalMs)
            push(frame, frameMs)
            frameTimes.addLast(System.nanoTime())
            if (frameTimes.size > window) frameTimes.removeFirst()
        }

        fun summary(model: LandmarkModel): String {
            val fps = if (frameTimes.size > 1) (frameTimes.size - 1) * 1e9 / (frameTimes.last() - frameTimes.first()) else 0.0
            return String.format(
                Locale.US,
                "detector %.1f ms | landmarks %.1f ms (model %.1f)\nend to end %.1f ms | frame %.1f ms | %.0f fps\n%s %s %s x%d",
                median(detector), median(landmarks), median(inference), median(total), median(frame), fps,
                model.name, model.inputType, model.delegate, model.threads
            )
        }

        private fun push(q: ArrayDeque<Double>, v: Double) {
            q.addLast(v)
            if (q.size > window) q.removeFirst()
        }

        private fun median(q: ArrayDeque<Double>): Double {
            if (q.isEmpty()) return Double.NaN
            val s = q.sorted()
            return if (s.size % 2 == 1) s[s.size / 2] else (s[s.size / 2 - 1] + s[s.size / 2]) / 2
        }
    }

    companion object {
        private const val TAG = "edgekd"
        private const val DEFAULT_THREADS = 4
        private const val REDETECT_EVERY = 10
    }
}
