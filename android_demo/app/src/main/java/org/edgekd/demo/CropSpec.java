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
    /** 3 rows of {@link #NUM_KEYPOINT_FEATURES} weights (offset x, offset y, log scale), or null: box mapping only. */
    public final double[][] keypointWeights;

    public static final int NUM_KEYPOINT_FEATURES = 15;
    /** crop.py KEYPOINT_GUARD: box sides off the box mapping's centre, |log| off its scale. */
    public static final double CENTRE_GUARD = 0.25, SCALE_GUARD = 0.3;

    public CropSpec(int inputSize, double margin, double offsetX, double offsetY, double detectorScale) {
        this(inputSize, margin, offsetX, offsetY, detectorScale, null);
    }

    public CropSpec(int inputSize, double margin, double offsetX, double offsetY, double detectorScale,
                    double[][] keypointWeights) {
        if (inputSize <= 0) {
            throw new IllegalArgumentException("input_size must be positive, got " + inputSize);
        }
        if (keypointWeights != null) {
            if (keypointWeights.length != 3) {
                throw new IllegalArgumentException("detector_keypoint_weights: expected 3 rows, got " + keypointWeights.length);
            }
            for (double[] row : keypointWeights) {
                if (row.length != NUM_KEYPOINT_FEATURES) {
                    throw new IllegalArgumentException("detector_keypoint_weights: expected rows of "
                            + NUM_KEYPOINT_FEATURES + ", got " + row.length);
                }
                for (double v : row) {
                    if (Double.isNaN(v) || Double.isInfinite(v)) {
                        throw new IllegalArgumentException("detector_keypoint_weights: expected finite numbers");
                    }
                }
            }
        }
        this.inputSize = inputSize;
        this.margin = margin;
        this.offsetX = offsetX;
        this.offsetY = offsetY;
        this.detectorScale = detectorScale;
        this.keypointWeights = keypointWeights;
    }

    /** Detector box (x, y, w, h) to the landmark-box square it predicts (crop.py box_from_detector). */
    public double[] boxFromDetector(double x, double y, double w, double h) {
        return boxFromDetector(x, y, w, h, null);
    }

    /**
     * Detector box (x, y, w, h) and its 6 keypoints (x0, y0, ... x5, y5 in image pixels, BlazeFace's order; null
     * when the detector gives none) to the landmark-box square (crop.py box_from_detector): the keypoint mapping
     * when the model carries one and its answer stays within the guard of the box mapping's, else the box mapping.
     */
    public double[] boxFromDetector(double x, double y, double w, double h, float[] keypoints) {
        double side = Math.max(w, h);
        double cx = x + w / 2.0, cy = y + h / 2.0;
        double[] box = {cx + offsetX * side, cy + offsetY * side, detectorScale * side};
        double[] f = keypointWeights == null ? null : keypointFeatures(x, y, w, h, keypoints);
        if (f == null) {
            return box;
        }
        double[] out = new double[3];
        for (int r = 0; r < 3; r++) {
            for (int i = 0; i < NUM_KEYPOINT_FEATURES; i++) {
                out[r] += keypointWeights[r][i] * f[i];
            }
        }
        double[] byKeypoints = {cx + out[0] * side, cy + out[1] * side, Math.exp(out[2]) * side};
        if (Math.max(Math.abs(byKeypoints[0] - box[0]), Math.abs(byKeypoints[1] - box[1])) > CENTRE_GUARD * side
                || Math.abs(Math.log(byKeypoints[2] / box[2])) > SCALE_GUARD) {
            return box;
        }
        return byKeypoints;
    }

    /** crop.py keypoint_features: null unless there are 6 finite keypoints and the box has a size. */
    public static double[] keypointFeatures(double x, double y, double w, double h, float[] keypoints) {
        double side = Math.max(w, h);
        if (keypoints == null || keypoints.length != 12 || !(side > 0)) {
            return null;
        }
        double[] f = new double[NUM_KEYPOINT_FEATURES];
        f[0] = 1.0;
        double cx = x + w / 2.0, cy = y + h / 2.0;
        for (int i = 0; i < 6; i++) {
            if (Float.isNaN(keypoints[2 * i]) || Float.isInfinite(keypoints[2 * i])
                    || Float.isNaN(keypoints[2 * i + 1]) || Float.isInfinite(keypoints[2 * i + 1])) {
                return null;
            }
            f[1 + 2 * i] = (keypoints[2 * i] - cx) / side;
            f[2 + 2 * i] = (keypoints[2 * i + 1] - cy) / side;
        }
        double eyes = Math.hypot(f[1] - f[3], f[2] - f[4]);
        double mouth = Math.hypot((f[1] + f[3]) / 2.0 - f[7], (f[2] + f[4]) / 2.0 - f[8]);
        f[13] = Math.log(Math.max(eyes, 1e-3));
        f[14] = Math.log(Math.max(mouth, 1e-3));
        return f;
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
