import org.edgekd.demo.CropSpec
import org.edgekd.demo.FaceTracker

// Drives FaceTracker.kt with the scripted frames of tests/tracking_world.py (stdin) and prints what it tracks, one
// line per frame: "id detected cx cy side x0 y0 ..." per face, faces separated by " | ". The stub landmark model is
// tracking_world.stub_landmarks, operation for operation.
val SHAPE = doubleArrayOf(-0.5, -0.5, 0.5, -0.5, 0.0, 0.0, -0.3, 0.5, 0.3, 0.5)

fun stubLandmarks(box: DoubleArray, face: DoubleArray?, slide: Double, mouth: Double): FloatArray {
    var cx: Double
    val cy: Double
    val side: Double
    val shape = SHAPE.copyOf()
    if (face != null && FaceTracker.squareIou(box, face) > 0.2) {
        cx = face[0] + 0.1 * (box[0] - face[0])
        cy = face[1] + 0.1 * (box[1] - face[1])
        side = face[2]
        cx += slide * box[2]
        for (i in 3 until 5) shape[2 * i + 1] += mouth * (face[0] - 200.0) / 100.0
    } else {
        cx = box[0]
        cy = box[1]
        side = 0.94 * box[2]
    }
    return FloatArray(shape.size) { i -> (shape[i] * side + (if (i % 2 == 0) cx else cy)).toFloat() }
}

fun main(args: Array<String>) {
    val lines = generateSequence(::readLine).toList()
    val config = lines[0].trim().split(" ")
    val tracker = FaceTracker(redetectEvery = config[0].toInt(), maxFaces = config[1].toInt(),
        smoothing = config[2] == "1", anchor = config.size <= 6 || config[6] == "1",
        maxDrift = if (config.size > 8 && config[8] == "off") null else FaceTracker.MAX_DRIFT)
    val spec = CropSpec(128, 0.15, 0.0, 0.0, 1.0)
    val width = config[3].toInt()
    val height = config[4].toInt()
    val slide = if (config.size > 5) config[5].toDouble() else 0.0
    val mouth = if (config.size > 7) config[7].toDouble() else 0.0
    for (line in lines.drop(1)) {
        val v = line.trim().split(" ").map { it.toDouble() }
        val t = v[0]
        val nFaces = v[1].toInt()
        val faces = (0 until nFaces).map { doubleArrayOf(v[2 + 3 * it], v[3 + 3 * it], v[4 + 3 * it]) }
        val at = 2 + 3 * nFaces
        val boxes = (0 until v[at].toInt()).map { j -> DoubleArray(4) { v[at + 1 + 4 * j + it] } }
        val frame = object : FaceTracker.Frame {
            override val width = width
            override val height = height
            override fun detect() = boxes.map { spec.boxFromDetector(it[0], it[1], it[2], it[3]) }
            override fun landmarks(box: DoubleArray): FloatArray {
                var best: DoubleArray? = null
                for (f in faces) {
                    if (best == null || FaceTracker.squareIou(box, f) > FaceTracker.squareIou(box, best)) best = f
                }
                return stubLandmarks(box, best, slide, mouth)
            }
        }
        println(tracker.update(frame, t).joinToString(" | ") { r ->
            (listOf(r.id.toString(), if (r.detected) "1" else "0") + r.box.map { it.toString() } +
                r.points.map { it.toString() }).joinToString(" ")
        })
    }
}
