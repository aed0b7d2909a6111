package org.edgekd.demo;

/**
 * The crop definition, a line-by-line port of {@code edgekd/data/crop.py} CropSpec: the phone must cut exactly the
 * crop the model was trained on, so the numbers come from the model's metadata and the maths is the same.
 *
 * <p>Boxes are squares {cx, cy, side} in image pixels, pixel centres at integer coordinates (0-based). Matrices are
 * 2x3 affine transforms stored row-major as {a, b, c, d, e, f}: x' = a x + b y + c, y' = d x + e y + f.
 * Plain Java so the host's tests compare it with the Python implementation.
 */
public final class CropSpec {
    public final int inputSize;
    public final double margin;
    public final double offsetX;
    public final double offsetY;
    public final double detectorScale;

    public CropSpec(int inputSize, double margin, double offsetX, double offsetY, double detectorScale) {
        if (inputSize <= 0) {
            throw new IllegalArgumentException("input_size must be positive, got " + inputSize);
        }
        this.inputSize = inputSize;
        this.margin = margin;
        this.offsetX = offsetX;
        this.offsetY = offsetY;
        this.detectorScale = detectorScale;
    }

    /** Detector box (x, y, w, h) to the landmark-box square it predicts (crop.py box_from_detector). */
    public double[] boxFromDetector(double x, double y, double w, double h) {
        double side = Math.max(w, h);
        double cx = x + w / 2.0 + offsetX * side;
        double cy = y + h / 2.0 + offsetY * side;
        return new double[] {cx, cy, detectorScale * side};
    }

    /** Square around the extent of interleaved points x0, y0, x1, y1, ... (crop.py box_from_points). */
    public static double[] boxFromPoints(float[] xy) {
        double minX = Double.POSITIVE_INFINITY, minY = Double.POSITIVE_INFINITY;
        double maxX = Double.NEGATIVE_INFINITY, maxY = Double.NEGATIVE_INFINITY;
        for (int i = 0; i + 1 < xy.length; i += 2) {
            minX = Math.min(minX, xy[i]);
            maxX = Math.max(maxX, xy[i]);
            minY = Math.min(minY, xy[i + 1]);
            maxY = Math.max(maxY, xy[i + 1]);
        }
        return new double[] {(minX + maxX) / 2.0, (minY + maxY) / 2.0, Math.max(maxX - minX, maxY - minY)};
    }

    /**
     * Image pixels to crop pixels for a {cx, cy, side} box (crop.py matrix): the box grows by the margin on each
     * side and its centre lands on the crop's centre pixel ((size - 1) / 2, the pixel-centre convention).
     */
    public double[] matrix(double[] box) {
        double full = box[2] * (1.0 + 2.0 * margin);
        if (Double.isNaN(full) || Double.isInfinite(full) || full <= 0) {
            throw new IllegalArgumentException("degenerate face box side " + box[2]);
        }
        double s = inputSize / full;
        double c = (inputSize - 1) / 2.0;
        return new double[] {s, 0.0, c - s * box[0], 0.0, s, c - s * box[1]};
    }

    /** Inverse of a 2x3 affine matrix (cv2.invertAffineTransform). */
    public static double[] invert(double[] m) {
        double det = m[0] * m[4] - m[1] * m[3];
        double d = det != 0 ? 1.0 / det : 0.0;
        double a = m[4] * d, b = -m[1] * d, dd = -m[3] * d, e = m[0] * d;
        return new double[] {a, b, -a * m[2] - b * m[5], dd, e, -dd * m[2] - e * m[5]};
    }

    /** Applies a 2x3 matrix to interleaved points. */
    public static float[] transformPoints(float[] xy, double[] m) {
        float[] out = new float[xy.length];
        for (int i = 0; i + 1 < xy.length; i += 2) {
            double x = xy[i], y = xy[i + 1];
            out[i] = (float) (m[0] * x + m[1] * y + m[2]);
            out[i + 1] = (float) (m[3] * x + m[4] * y + m[5]);
        }
        return out;
    }

    /**
     * Model output (x0, y0, x1, y1, ... normalised as crop_px / input_size - 0.5) to image pixels, given the
     * image-to-crop matrix the input was cut with (crop.py denormalize, then the inverse transform).
     */
    public float[] decode(float[] normalized, double[] matrix) {
        float[] crop = new float[normalized.length];
        for (int i = 0; i < normalized.length; i++) {
            crop[i] = (normalized[i] + 0.5f) * inputSize;
        }
        return transformPoints(crop, invert(matrix));
    }

    /**
     * Intersection over union of two (x, y, w, h) boxes (edgekd.runtime.detector.iou): the desktop scores the
     * detection that overlaps the annotated face's landmark box most, and the phone picks it the same way.
     */
    public static double iou(double[] a, double[] b) {
        double iw = Math.max(0.0, Math.min(a[0] + a[2], b[0] + b[2]) - Math.max(a[0], b[0]));
        double ih = Math.max(0.0, Math.min(a[1] + a[3], b[1] + b[3]) - Math.max(a[1], b[1]));
        double inter = iw * ih;
        double union = a[2] * a[3] + b[2] * b[3] - inter;
        return union > 0 ? inter / union : 0.0;
    }
}
