package org.edgekd.demo

import org.json.JSONObject
import java.nio.ByteBuffer

/**
 * The part of a model's edgekd metadata (edgekd/core/metadata.py, format "edgekd-model/1") the app needs: the crop
 * the model was trained on and the landmark scheme. Read from the .tflite itself, so a model file is all the app
 * needs and cannot be paired with the wrong crop.
 */
class ModelMetadata(
    val scheme: String,
    val numPoints: Int,
    val crop: CropSpec,
    val quantization: String,
    val nmePair: IntArray?
) {
    companion object {
        const val FORMAT = "edgekd-model/1"

        fun read(model: ByteBuffer, source: String): ModelMetadata {
            val json = try {
                TfliteMetadata.readEdgekdJson(model)
            } catch (e: IllegalArgumentException) {
                throw IllegalArgumentException("$source: ${e.message}")
            } ?: throw IllegalArgumentException("$source: no edgekd metadata; export the model with `edgekd export`")
            return parse(json, source)
        }

        fun parse(json: String, source: String): ModelMetadata {
            val o = JSONObject(json)
            val format = o.optString("format")
            require(format == FORMAT) { "$source: metadata format '$format', expected '$FORMAT'" }
            val color = o.optString("color_order", "RGB")
            require(color == "RGB") { "$source: color_order $color is not supported (RGB only)" }
            val range = o.optJSONArray("input_range")
            require(range == null || (range.getDouble(0) == 0.0 && range.getDouble(1) == 1.0)) {
                "$source: input_range $range is not supported ([0, 1] only)"
            }
            val c = o.getJSONObject("crop")
            val offset = c.optJSONArray("detector_offset")
            // null (JSON null or absent, as in models exported before edgekd 0.7.0): the box mapping alone
            val weights = c.optJSONArray("detector_keypoint_weights")?.let { rows ->
                Array(rows.length()) { r -> rows.getJSONArray(r).let { row -> DoubleArray(row.length()) { row.getDouble(it) } } }
            }
            val crop = try {
                CropSpec(
                    c.getInt("input_size"),
                    c.getDouble("margin"),
                    offset?.getDouble(0) ?: 0.0,
                    offset?.getDouble(1) ?: 0.0,
                    c.optDouble("detector_scale", 1.0),
                    weights
                )
            } catch (e: IllegalArgumentException) {
                throw IllegalArgumentException("$source: ${e.message}")
            }
            val pair = o.optJSONArray("nme_pair")?.let { a -> IntArray(a.length()) { a.getInt(it) } }
            return ModelMetadata(
                o.getString("scheme"), o.getInt("num_points"), crop, o.optString("quantization", "float32"), pair
            )
        }
    }
}
