package org.edgekd.demo

import org.tensorflow.lite.DataType
import org.tensorflow.lite.Interpreter
import org.tensorflow.lite.gpu.CompatibilityList
import org.tensorflow.lite.gpu.GpuDelegate
import java.io.Closeable
import java.nio.ByteBuffer
import java.nio.ByteOrder

/**
 * An edgekd landmark .tflite on LiteRT: XNNPACK on the CPU with [threads] threads, or the GPU delegate when asked
 * for and supported (falling back to the CPU otherwise, reported in [delegate]). Input and output follow the model's
 * metadata and its tensors' own quantization (see TensorCodec). Not thread-safe; a GPU delegate must be used on the
 * thread that created it.
 */
class LandmarkModel(model: ByteBuffer, val name: String, val threads: Int, useGpu: Boolean) : Closeable {
    val meta: ModelMetadata = ModelMetadata.read(model, name)
    val delegate: String
    val inputType: String
    val outputType: String
    private var gpuDelegate: GpuDelegate? = null
    private val interpreter: Interpreter
    private val inType: Int
    private val outType: Int
    private val inScale: Float
    private val inZero: Int
    private val outScale: Float
    private val outZero: Int
    private val input: ByteBuffer
    private val output: ByteBuffer

    init {
        var gpu: GpuDelegate? = null
        if (useGpu) {
            val compat = CompatibilityList()
            if (compat.isDelegateSupportedOnThisDevice) {
                gpu = GpuDelegate(compat.bestOptionsForThisDevice)
            }
            compat.close()
        }
        interpreter = try {
            Interpreter(model, options(gpu))
        } catch (e: RuntimeException) {
            if (gpu == null) throw e
            gpu.close() // the GPU delegate refused the graph: run on the CPU and say so
            gpu = null
            Interpreter(model, options(null))
        }
        gpuDelegate = gpu
        delegate = if (gpu != null) "gpu" else "cpu"

        val size = meta.crop.inputSize
        val inT = interpreter.getInputTensor(0)
        val shape = inT.shape()
        require(shape.size == 4 && shape[1] == size && shape[2] == size && shape[3] == 3) {
            "$name: input shape ${shape.contentToString()} does not match the metadata's input_size $size (1, $size, $size, 3)"
        }
        val outT = interpreter.getOutputTensor(0)
        require(outT.numElements() == 2 * meta.numPoints) {
            "$name: output has ${outT.numElements()} values, the metadata says ${meta.numPoints} points"
        }
        inType = codec(inT.dataType(), "input")
        outType = codec(outT.dataType(), "output")
        inputType = typeName(inType)
        outputType = typeName(outType)
        inScale = inT.quantizationParams().scale
        inZero = inT.quantizationParams().zeroPoint
        outScale = outT.quantizationParams().scale
        outZero = outT.quantizationParams().zeroPoint
        input = ByteBuffer.allocateDirect(inT.numBytes()).order(ByteOrder.nativeOrder())
        output = ByteBuffer.allocateDirect(outT.numBytes()).order(ByteOrder.nativeOrder())
    }

    /** Writes a crop (ARGB, input_size squared) into the input tensor's buffer. */
    fun setInput(crop: IntArray) = TensorCodec.encode(crop, inType, inScale, inZero, input)

    /** Runs the model on the last input; x0, y0, x1, y1, ... normalised crop coordinates. */
    fun run(): FloatArray {
        interpreter.run(input, output)
        return TensorCodec.decode(output, outType, 2 * meta.numPoints, outScale, outZero)
    }

    override fun close() {
        interpreter.close()
        gpuDelegate?.close()
        gpuDelegate = null
    }

    private fun options(gpu: GpuDelegate?): Interpreter.Options {
        val o = Interpreter.Options().setNumThreads(threads).setUseXNNPACK(true)
        if (gpu != null) o.addDelegate(gpu)
        return o
    }

    private fun codec(type: DataType, what: String): Int = when (type) {
        DataType.FLOAT32 -> TensorCodec.FLOAT32
        DataType.INT8 -> TensorCodec.INT8
        DataType.UINT8 -> TensorCodec.UINT8
        else -> throw IllegalArgumentException("$name: $what type $type is not supported (float32, int8, uint8)")
    }

    private fun typeName(codec: Int) = when (codec) {
        TensorCodec.FLOAT32 -> "float32"
        TensorCodec.INT8 -> "int8"
        else -> "uint8"
    }
}
