package org.edgekd.demo

import android.graphics.Bitmap
import android.graphics.BitmapFactory
import android.os.Bundle
import android.util.Log
import android.view.WindowManager
import android.widget.TextView
import androidx.appcompat.app.AppCompatActivity
import com.google.mediapipe.tasks.vision.core.RunningMode
import org.json.JSONArray
import org.json.JSONObject
import java.io.File
import java.io.RandomAccessFile
import java.nio.MappedByteBuffer
import java.nio.channels.FileChannel

/**
 * Evaluation mode, started over adb by `edgekd bench --device pixel` (edgekd/bench/device.py) or by hand:
 *
 *     adb shell am start -S -n org.edgekd.demo/.EvalActivity --es run RUN --es model MODEL.tflite \
 *         --ei threads 4 --es delegate cpu --ei warmup 3
 *
 * Everything lives in the app's external files folder, which adb can write and the app can read without any
 * permission on every Android version: /sdcard/Android/data/org.edgekd.demo/files/eval/RUN/ holds the model,
 * images/ and optionally request.json (protocol, per-image crop box for protocol gt and landmark box to pick the
 * matching detection for protocol detector); the app writes result.json, then the marker
 * file `done` ("ok" or "error"), which the host polls for. The format of both JSON files is the JSON Schema
 * edgekd/bench/device_eval.schema.json; every key is a constant in DeviceEvalJson. `--ez prepare true` only creates
 * the eval folder, so that it belongs to the app before adb pushes into it, and exits.
 */
class EvalActivity : AppCompatActivity() {
    private lateinit var status: TextView

    private class Args(val run: String, val dir: File, val model: String?, val threads: Int, val delegate: String, val warmup: Int)
    private class Entry(val file: String, val box: DoubleArray?, val match: DoubleArray?)
    private class Request(val protocol: String, val entries: List<Entry>)

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_eval)
        window.addFlags(WindowManager.LayoutParams.FLAG_KEEP_SCREEN_ON)
        status = findViewById(R.id.status)
        val root = File(getExternalFilesDir(null), DeviceEvalJson.EVAL_DIR)
        root.mkdirs()
        if (intent.getBooleanExtra(DeviceEvalJson.EXTRA_PREPARE, false)) {
            show("ready: $root")
            finish()
            return
        }
        val run = intent.getStringExtra(DeviceEvalJson.EXTRA_RUN)
        if (run == null || !RUN_NAME.matches(run)) {
            show("missing or invalid --es ${DeviceEvalJson.EXTRA_RUN} (letters, digits, . _ -, not starting with .): $run")
            Log.e(TAG, "missing or invalid run name: $run")
            return
        }
        val model = intent.getStringExtra(DeviceEvalJson.EXTRA_MODEL)
        if (model != null && (model.contains('/') || model.startsWith("."))) {
            show("invalid --es ${DeviceEvalJson.EXTRA_MODEL} $model: a file name inside the run folder")
            return
        }
        val delegate = intent.getStringExtra(DeviceEvalJson.EXTRA_DELEGATE) ?: "cpu"
        val args = Args(
            run, File(root, run), model,
            intent.getIntExtra(DeviceEvalJson.EXTRA_THREADS, 4).coerceAtLeast(1),
            if (delegate == "gpu") "gpu" else "cpu",
            intent.getIntExtra(DeviceEvalJson.EXTRA_WARMUP, 3).coerceAtLeast(0)
        )
        if (savedInstanceState == null) {
            Thread({ evaluate(args) }, "edgekd-eval").start()
        }
    }

    private fun evaluate(a: Args) {
        val started = System.nanoTime()
        a.dir.mkdirs()
        File(a.dir, DeviceEvalJson.DONE_FILE).delete()
        val rt = DeviceEvalJson.Runtime().apply {
            delegateRequested = a.delegate
            threads = a.threads
            warmup = a.warmup
            xnnpack = true
            litertVersion = DeviceInfo.litertVersion()
        }
        val images = ArrayList<DeviceEvalJson.Image>()
        var state = DeviceEvalJson.STATUS_OK
        var error: String? = null
        var model: LandmarkModel? = null
        var detector: FaceStage? = null
        try {
            val request = readRequest(a.dir)
            rt.protocol = request.protocol
            val modelFile = if (a.model != null) File(a.dir, a.model) else onlyModel(a.dir)
            require(modelFile.isFile) { "model ${modelFile.name} not found in ${a.dir}" }
            rt.modelFile = modelFile.name
            rt.modelBytes = modelFile.length()
            var t = System.nanoTime()
            val m = LandmarkModel(map(modelFile), modelFile.name, a.threads, a.delegate == "gpu")
            model = m
            rt.modelInitMs = ms(t)
            rt.scheme = m.meta.scheme
            rt.numPoints = m.meta.numPoints
            rt.inputSize = m.meta.crop.inputSize
            rt.inputType = m.inputType
            rt.outputType = m.outputType
            rt.delegate = m.delegate
            if (request.protocol == PROTOCOL_DETECTOR) {
                t = System.nanoTime()
                val d = FaceStage(this, RunningMode.IMAGE)
                detector = d
                rt.detectorInitMs = ms(t)
                rt.detectorModel = FaceStage.MODEL_ASSET
                rt.detectorMinConfidence = d.minConfidence
            }
            val pipeline = LandmarkPipeline(detector, m)
            warmUp(pipeline, a, request)
            for ((i, entry) in request.entries.withIndex()) {
                show("${a.run}: ${i + 1}/${request.entries.size} ${entry.file}")
                images.add(evaluateImage(pipeline, a.dir, entry, request.protocol))
            }
        } catch (e: Throwable) {
            Log.e(TAG, "evaluation failed", e)
            state = DeviceEvalJson.STATUS_ERROR
            error = e.message ?: e.toString()
        } finally {
            runCatching { model?.close() }
            runCatching { detector?.close() }
        }
        rt.wallS = (System.nanoTime() - started) / 1e9
        val text = DeviceEvalJson.document(a.run, state, error, DeviceInfo.app(this), DeviceInfo.device(), rt, images)
        writeAtomically(File(a.dir, DeviceEvalJson.RESULT_FILE), text)
        writeAtomically(File(a.dir, DeviceEvalJson.DONE_FILE), state + "\n")
        show("${a.run}: $state ${error ?: ""}\n${images.size} images -> ${File(a.dir, DeviceEvalJson.RESULT_FILE)}")
        runOnUiThread { finish() }
    }

    /** Runs the first readable image a few times so one-off costs (allocation, caches, clocks) stay out of the times. */
    private fun warmUp(pipeline: LandmarkPipeline, a: Args, request: Request) {
        if (a.warmup == 0) return
        for (entry in request.entries) {
            val bitmap = decode(File(File(a.dir, DeviceEvalJson.IMAGES_DIR), entry.file)) ?: continue
            try {
                repeat(a.warmup) { run(pipeline, bitmap, entry, request.protocol) }
                return
            } catch (e: Exception) {
                continue // this image fails; its error is reported with the image, warm up on the next one
            } finally {
                bitmap.recycle()
            }
        }
    }

    private fun evaluateImage(pipeline: LandmarkPipeline, dir: File, entry: Entry, protocol: String): DeviceEvalJson.Image {
        val image = DeviceEvalJson.Image()
        image.file = entry.file
        try {
            val t = System.nanoTime()
            val bitmap = decode(File(File(dir, DeviceEvalJson.IMAGES_DIR), entry.file))
                ?: throw IllegalArgumentException("cannot decode ${entry.file}")
            image.timings.decode = ms(t)
            image.width = bitmap.width
            image.height = bitmap.height
            val r = run(pipeline, bitmap, entry, protocol)
            bitmap.recycle()
            image.faces = r.faces
            r.face?.let {
                image.score = it.score
                image.detectorBox = doubleArrayOf(it.x.toDouble(), it.y.toDouble(), it.w.toDouble(), it.h.toDouble())
            }
            image.box = r.box
            image.points = r.points
            image.timings.detector = r.detectorMs
            image.timings.crop = r.cropMs
            image.timings.inference = r.inferenceMs
            image.timings.landmarks = r.landmarksMs
            image.timings.total = r.totalMs
        } catch (e: Exception) {
            image.error = e.message ?: e.toString()
        } catch (e: OutOfMemoryError) {
            image.error = "out of memory decoding ${entry.file}"
        }
        return image
    }

    private fun run(pipeline: LandmarkPipeline, bitmap: Bitmap, entry: Entry, protocol: String): LandmarkPipeline.Result =
        if (protocol == PROTOCOL_GT) {
            pipeline.process(bitmap, cropBox = entry.box ?: throw IllegalArgumentException("protocol gt needs a box for ${entry.file}"))
        } else {
            pipeline.process(bitmap, matchBox = entry.match)
        }

    private fun readRequest(dir: File): Request {
        val file = File(dir, DeviceEvalJson.REQUEST_FILE)
        if (!file.isFile) {
            val names = File(dir, DeviceEvalJson.IMAGES_DIR).list()?.sorted()
                ?: throw IllegalArgumentException("no ${DeviceEvalJson.IMAGES_DIR}/ folder in $dir")
            return Request(PROTOCOL_DETECTOR, names.map { Entry(it, null, null) })
        }
        val o = JSONObject(file.readText())
        val format = o.optString(DeviceEvalJson.REQ_FORMAT)
        require(format == DeviceEvalJson.REQUEST_FORMAT) { "${file.name}: format '$format', expected '${DeviceEvalJson.REQUEST_FORMAT}'" }
        val protocol = o.getString(DeviceEvalJson.REQ_PROTOCOL)
        require(protocol == PROTOCOL_DETECTOR || protocol == PROTOCOL_GT) { "${file.name}: unknown protocol '$protocol'" }
        val list = o.getJSONArray(DeviceEvalJson.REQ_IMAGES)
        val entries = (0 until list.length()).map { i ->
            val e = list.getJSONObject(i)
            val name = e.getString(DeviceEvalJson.REQ_FILE)
            require(!name.contains('/')) { "${file.name}: image names must not contain '/': $name" }
            Entry(name, numbers(e.optJSONArray(DeviceEvalJson.REQ_BOX), 3), numbers(e.optJSONArray(DeviceEvalJson.REQ_MATCH), 4))
        }
        return Request(protocol, entries)
    }

    private fun numbers(a: JSONArray?, n: Int): DoubleArray? {
        if (a == null) return null
        require(a.length() == n) { "${DeviceEvalJson.REQUEST_FILE}: expected $n numbers, got $a" }
        return DoubleArray(n) { a.getDouble(it) }
    }

    private fun onlyModel(dir: File): File {
        val models = dir.listFiles { f -> f.name.endsWith(".tflite") }?.toList() ?: emptyList()
        require(models.size == 1) { "pass --es ${DeviceEvalJson.EXTRA_MODEL} NAME: $dir holds ${models.size} .tflite files" }
        return models[0]
    }

    private fun map(file: File): MappedByteBuffer =
        RandomAccessFile(file, "r").use { it.channel.map(FileChannel.MapMode.READ_ONLY, 0, it.length()) }

    private fun decode(file: File): Bitmap? {
        val options = BitmapFactory.Options().apply {
            inPreferredConfig = Bitmap.Config.ARGB_8888
            inScaled = false
        }
        return BitmapFactory.decodeFile(file.path, options)
    }

    private fun writeAtomically(target: File, text: String) {
        val tmp = File(target.parentFile, target.name + ".tmp")
        tmp.writeText(text)
        if (!tmp.renameTo(target)) {
            target.delete()
            check(tmp.renameTo(target)) { "cannot write $target" }
        }
    }

    private fun show(text: String) = runOnUiThread { status.text = text }

    private fun ms(from: Long) = (System.nanoTime() - from) / 1e6

    companion object {
        private const val TAG = "edgekd"
        private const val PROTOCOL_DETECTOR = "detector"
        private const val PROTOCOL_GT = "gt"
        private val RUN_NAME = Regex("[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}")
    }
}
