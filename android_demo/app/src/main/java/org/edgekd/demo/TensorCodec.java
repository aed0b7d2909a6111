package org.edgekd.demo;

import java.nio.ByteBuffer;

/**
 * Model input and output values, per the edgekd model convention (edgekd/metadata.py): input RGB with
 * float value = pixel / 255; int8/uint8 tensors store round(value / scale + zero_point) with the tensor's own
 * quantization; output x0, y0, x1, y1, ... as floats, dequantized as (q - zero_point) * scale when integer.
 * Plain Java so the host's tests check the arithmetic against numpy.
 */
public final class TensorCodec {
    public static final int FLOAT32 = 0;
    public static final int INT8 = 1;
    public static final int UINT8 = 2;

    private TensorCodec() {}

    public static int bytesPerValue(int type) {
        return type == FLOAT32 ? 4 : 1;
    }

    /** Quantized value of a float for an int8/uint8 tensor (rounded half to even, as numpy on the desktop). */
    public static int quantize(float value, int type, float scale, int zeroPoint) {
        double q = Math.rint((double) value / scale + zeroPoint);
        double lo = type == INT8 ? -128 : 0;
        double hi = type == INT8 ? 127 : 255;
        return (int) Math.max(lo, Math.min(hi, q));
    }

    /** Writes ARGB crop pixels into {@code out} (position 0 onwards) as the input tensor's RGB values. */
    public static void encode(int[] argb, int type, float scale, int zeroPoint, ByteBuffer out) {
        out.rewind();
        for (int p : argb) {
            for (int shift = 16; shift >= 0; shift -= 8) {
                float v = ((p >> shift) & 0xFF) / 255.0f;
                if (type == FLOAT32) {
                    out.putFloat(v);
                } else {
                    out.put((byte) quantize(v, type, scale, zeroPoint));
                }
            }
        }
        out.rewind();
    }

    /** The first {@code count} output values as floats. */
    public static float[] decode(ByteBuffer in, int type, int count, float scale, int zeroPoint) {
        float[] out = new float[count];
        in.rewind();
        for (int i = 0; i < count; i++) {
            if (type == FLOAT32) {
                out[i] = in.getFloat();
            } else {
                int q = type == INT8 ? in.get() : (in.get() & 0xFF);
                out[i] = (q - zeroPoint) * scale;
            }
        }
        in.rewind();
        return out;
    }
}
