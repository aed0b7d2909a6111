package org.edgekd.demo;

/**
 * Cuts the model input out of an image exactly as {@code edgekd/data/crop.py warp} does on the desktop: halve the
 * image with cv2.pyrDown (5x5 binomial, reflect-101 border, uint8 rounding) while the crop shrinks it by more than
 * 2x, then sample bilinearly with a black constant border (cv2.warpAffine, INTER_LINEAR, BORDER_CONSTANT 0).
 *
 * <p>Android's own bitmap scaling uses other pixel-centre and filtering rules, so a model trained on OpenCV crops
 * would see slightly different faces; doing the maths by hand keeps desktop and phone inputs identical (the host's
 * tests compare this class with cv2 pixel by pixel). Only the pyramid region under the crop is computed, so a large
 * photo costs little more than a camera frame. Pixels are ARGB ints as returned by Bitmap.getPixels.
 */
public final class ImageWarp {
    private static final int[] K = {1, 4, 6, 4, 1};

    private ImageWarp() {}

    /** A rectangle [x0, x0 + w) x [y0, y0 + h) of a pyramid level whose full size is fullW x fullH. */
    private static final class Level {
        final int[] px; // ARGB, row-major over the rectangle
        final int x0, y0, w, h, fullW, fullH;

        Level(int[] px, int x0, int y0, int w, int h, int fullW, int fullH) {
            this.px = px;
            this.x0 = x0;
            this.y0 = y0;
            this.w = w;
            this.h = h;
            this.fullW = fullW;
            this.fullH = fullH;
        }

        int at(int x, int y) {
            return px[(y - y0) * w + (x - x0)];
        }
    }

    /**
     * The size x size crop (ARGB, opaque) of a width x height ARGB image under the image-to-crop matrix
     * {a, b, c, d, e, f}.
     */
    public static int[] warp(int[] argb, int width, int height, double[] matrix, int size) {
        if (argb.length < width * height) {
            throw new IllegalArgumentException("pixel array smaller than " + width + "x" + height);
        }
        double[] m = matrix.clone();
        double scale = Math.sqrt(Math.abs(m[0] * m[4] - m[1] * m[3]));
        int[] ws = new int[40];
        int[] hs = new int[40];
        ws[0] = width;
        hs[0] = height;
        int levels = 0;
        while (scale < 0.5 && Math.min(ws[levels], hs[levels]) >= 4 && levels < ws.length - 1) {
            ws[levels + 1] = (ws[levels] + 1) / 2;
            hs[levels + 1] = (hs[levels] + 1) / 2;
            levels++;
            m[0] *= 2.0;
            m[1] *= 2.0;
            m[3] *= 2.0;
            m[4] *= 2.0;
            scale *= 2.0;
        }
        double[] inv = CropSpec.invert(m);
        Level src = new Level(argb, 0, 0, width, height, width, height);
        if (levels > 0) {
            // Source pixels the bilinear sampling can touch at the last level, then what each level needs below.
            int[][] roi = new int[levels + 1][];
            roi[levels] = footprint(inv, size, ws[levels], hs[levels]);
            if (roi[levels] == null) {
                return blank(size);
            }
            for (int l = levels - 1; l >= 1; l--) {
                int[] r = roi[l + 1];
                roi[l] = new int[] {Math.max(0, 2 * r[0] - 2), Math.max(0, 2 * r[1] - 2),
                        Math.min(ws[l] - 1, 2 * r[2] + 2), Math.min(hs[l] - 1, 2 * r[3] + 2)};
            }
            for (int l = 1; l <= levels; l++) {
                src = pyrDown(src, roi[l], ws[l], hs[l]);
            }
        }
        return sample(src, inv, size);
    }

    /** {x0, y0, x1, y1} (inclusive) of the source pixels under the crop, or null when it misses the image. */
    private static int[] footprint(double[] inv, int size, int w, int h) {
        double minX = Double.POSITIVE_INFINITY, minY = Double.POSITIVE_INFINITY;
        double maxX = Double.NEGATIVE_INFINITY, maxY = Double.NEGATIVE_INFINITY;
        for (int corner = 0; corner < 4; corner++) {
            double x = (corner & 1) == 0 ? 0 : size - 1;
            double y = (corner & 2) == 0 ? 0 : size - 1;
            double sx = inv[0] * x + inv[1] * y + inv[2];
            double sy = inv[3] * x + inv[4] * y + inv[5];
            minX = Math.min(minX, sx);
            maxX = Math.max(maxX, sx);
            minY = Math.min(minY, sy);
            maxY = Math.max(maxY, sy);
        }
        int x0 = (int) Math.max(0, Math.floor(minX));
        int y0 = (int) Math.max(0, Math.floor(minY));
        int x1 = (int) Math.min(w - 1, Math.floor(maxX) + 1);
        int y1 = (int) Math.min(h - 1, Math.floor(maxY) + 1);
        return x0 > x1 || y0 > y1 ? null : new int[] {x0, y0, x1, y1};
    }

    /** cv2.pyrDown restricted to roi {x0, y0, x1, y1} of the half-size level (fullW x fullH). */
    private static Level pyrDown(Level src, int[] roi, int fullW, int fullH) {
        int dw = roi[2] - roi[0] + 1;
        int dh = roi[3] - roi[1] + 1;
        // Horizontal pass over the source rows the destination rows reach (reflect-101 stays inside this band).
        int top = Math.max(src.y0, 2 * roi[1] - 2);
        int bottom = Math.min(src.y0 + src.h - 1, 2 * roi[3] + 2);
        int[] rows = new int[(bottom - top + 1) * dw * 3];
        for (int y = top; y <= bottom; y++) {
            int base = (y - top) * dw * 3;
            for (int i = 0; i < dw; i++) {
                int cx = 2 * (roi[0] + i);
                int r = 0, g = 0, b = 0;
                for (int k = 0; k < 5; k++) {
                    int p = src.at(reflect101(cx + k - 2, src.fullW), y);
                    r += K[k] * ((p >> 16) & 0xFF);
                    g += K[k] * ((p >> 8) & 0xFF);
                    b += K[k] * (p & 0xFF);
                }
                rows[base + 3 * i] = r;
                rows[base + 3 * i + 1] = g;
                rows[base + 3 * i + 2] = b;
            }
        }
        int[] out = new int[dw * dh];
        for (int j = 0; j < dh; j++) {
            int cy = 2 * (roi[1] + j);
            for (int i = 0; i < dw; i++) {
                int r = 0, g = 0, b = 0;
                for (int k = 0; k < 5; k++) {
                    int base = ((reflect101(cy + k - 2, src.fullH) - top) * dw + i) * 3;
                    r += K[k] * rows[base];
                    g += K[k] * rows[base + 1];
                    b += K[k] * rows[base + 2];
                }
                out[j * dw + i] = 0xFF000000 | (((r + 128) >> 8) << 16) | (((g + 128) >> 8) << 8) | ((b + 128) >> 8);
            }
        }
        return new Level(out, roi[0], roi[1], dw, dh, fullW, fullH);
    }

    private static int reflect101(int i, int n) {
        if (n == 1) {
            return 0;
        }
        while (i < 0 || i >= n) {
            i = i < 0 ? -i : 2 * n - 2 - i;
        }
        return i;
    }

    /**
     * Bilinear sampling with a black border: dst(x, y) = src(inv * (x, y)), in float32 arithmetic and rounded half
     * to even like OpenCV 5's warpAffine, which makes the crops bit-identical to the desktop's in practice.
     */
    private static int[] sample(Level src, double[] inv, int size) {
        float a = (float) inv[0], b = (float) inv[1], c = (float) inv[2];
        float d = (float) inv[3], e = (float) inv[4], f = (float) inv[5];
        int[] out = new int[size * size];
        for (int y = 0; y < size; y++) {
            for (int x = 0; x < size; x++) {
                float sx = a * x + b * y + c;
                float sy = d * x + e * y + f;
                float fx0 = (float) Math.floor(sx), fy0 = (float) Math.floor(sy);
                int x0 = (int) fx0, y0 = (int) fy0;
                float ax = sx - fx0, ay = sy - fy0;
                float r = 0f, g = 0f, bl = 0f;
                for (int k = 0; k < 4; k++) {
                    int px = x0 + (k & 1);
                    int py = y0 + (k >> 1);
                    if (px < 0 || py < 0 || px >= src.fullW || py >= src.fullH) {
                        continue;
                    }
                    float wgt = ((k & 1) == 0 ? 1f - ax : ax) * ((k >> 1) == 0 ? 1f - ay : ay);
                    int p = src.at(px, py);
                    r += ((p >> 16) & 0xFF) * wgt;
                    g += ((p >> 8) & 0xFF) * wgt;
                    bl += (p & 0xFF) * wgt;
                }
                out[y * size + x] = 0xFF000000 | (clamp(r) << 16) | (clamp(g) << 8) | clamp(bl);
            }
        }
        return out;
    }

    private static int clamp(float v) {
        double q = Math.rint(v);
        return q < 0 ? 0 : (q > 255 ? 255 : (int) q);
    }

    private static int[] blank(int size) {
        int[] out = new int[size * size];
        java.util.Arrays.fill(out, 0xFF000000);
        return out;
    }
}
