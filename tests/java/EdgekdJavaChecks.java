import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.lang.reflect.Field;
import java.lang.reflect.Modifier;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

import org.edgekd.demo.CropSpec;
import org.edgekd.demo.DeviceEvalJson;
import org.edgekd.demo.ImageWarp;
import org.edgekd.demo.TensorCodec;
import org.edgekd.demo.TfliteMetadata;

/**
 * Test driver for the Android app's plain-Java classes (tests/test_android_java.py compiles it with them).
 * Reads one command per line on stdin and prints one answer line per command, so one JVM serves a whole test.
 */
public final class EdgekdJavaChecks {
    public static void main(String[] args) throws Exception {
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, "UTF-8"));
        String line;
        while ((line = in.readLine()) != null) {
            line = line.trim();
            if (line.isEmpty()) {
                continue;
            }
            String[] a = line.split("\\s+");
            try {
                System.out.println(run(a));
            } catch (Exception e) {
                System.out.println("ERROR " + e.getClass().getSimpleName() + ": " + e.getMessage());
            }
            System.out.flush();
        }
    }

    private static String run(String[] a) throws Exception {
        switch (a[0]) {
            case "meta": {
                ByteBuffer model = ByteBuffer.wrap(Files.readAllBytes(Paths.get(a[1])));
                String json = TfliteMetadata.readEdgekdJson(model);
                return json == null ? "NONE" : "JSON " + json.replace("\n", "\\n");
            }
            case "metanames":
                return String.join(",", TfliteMetadata.readAll(ByteBuffer.wrap(Files.readAllBytes(Paths.get(a[1])))).keySet());
            case "box_from_detector":
                return join(spec(a, 1).boxFromDetector(d(a[6]), d(a[7]), d(a[8]), d(a[9])));
            case "box_from_keypoints": { // box_from_keypoints S margin ox oy scale w0..w44 x y w h k0..k11
                double[][] weights = new double[3][CropSpec.NUM_KEYPOINT_FEATURES];
                for (int i = 0; i < 3 * CropSpec.NUM_KEYPOINT_FEATURES; i++) {
                    weights[i / CropSpec.NUM_KEYPOINT_FEATURES][i % CropSpec.NUM_KEYPOINT_FEATURES] = d(a[6 + i]);
                }
                CropSpec base = spec(a, 1);
                CropSpec kp = new CropSpec(base.inputSize, base.margin, base.offsetX, base.offsetY, base.detectorScale,
                        weights);
                int b = 6 + 3 * CropSpec.NUM_KEYPOINT_FEATURES;
                return join(kp.boxFromDetector(d(a[b]), d(a[b + 1]), d(a[b + 2]), d(a[b + 3]),
                        floats(a, b + 4, b + 16)));
            }
            case "matrix":
                return join(spec(a, 1).matrix(new double[] {d(a[6]), d(a[7]), d(a[8])}));
            case "box_from_points":
                return join(CropSpec.boxFromPoints(floats(a, 1, a.length)));
            case "decode": { // decode S margin ox oy scale m0..m5 v0 v1 ...
                double[] m = new double[6];
                for (int i = 0; i < 6; i++) {
                    m[i] = d(a[6 + i]);
                }
                return join(spec(a, 1).decode(floats(a, 12, a.length), m));
            }
            case "iou":
                return join(new double[] {CropSpec.iou(new double[] {d(a[1]), d(a[2]), d(a[3]), d(a[4])},
                        new double[] {d(a[5]), d(a[6]), d(a[7]), d(a[8])})});
            case "warp": { // warp in.rgb w h m0..m5 size out.rgb
                int w = Integer.parseInt(a[2]), h = Integer.parseInt(a[3]);
                byte[] rgb = Files.readAllBytes(Paths.get(a[1]));
                double[] m = new double[6];
                for (int i = 0; i < 6; i++) {
                    m[i] = d(a[4 + i]);
                }
                int size = Integer.parseInt(a[10]);
                int[] crop = ImageWarp.warp(argb(rgb, w * h), w, h, m, size);
                Files.write(Paths.get(a[11]), rgb(crop));
                return "OK";
            }
            case "encode": { // encode type scale zp in.rgb n out.bin
                int type = Integer.parseInt(a[1]);
                int n = Integer.parseInt(a[5]);
                ByteBuffer out = ByteBuffer.allocate(n * 3 * TensorCodec.bytesPerValue(type)).order(ByteOrder.LITTLE_ENDIAN);
                TensorCodec.encode(argb(Files.readAllBytes(Paths.get(a[4])), n), type, f(a[2]), Integer.parseInt(a[3]), out);
                Files.write(Paths.get(a[6]), out.array());
                return "OK";
            }
            case "decode_output": { // decode_output type scale zp in.bin count
                int type = Integer.parseInt(a[1]);
                ByteBuffer buf = ByteBuffer.wrap(Files.readAllBytes(Paths.get(a[4]))).order(ByteOrder.LITTLE_ENDIAN);
                float[] v = TensorCodec.decode(buf, type, Integer.parseInt(a[5]), f(a[2]), Integer.parseInt(a[3]));
                double[] dv = new double[v.length];
                for (int i = 0; i < v.length; i++) {
                    dv[i] = v[i];
                }
                return join(dv);
            }
            case "evaljson":
                Files.write(Paths.get(a[1]), sampleDocument().getBytes("UTF-8"));
                return "OK";
            case "constants":
                return constants();
            default:
                throw new IllegalArgumentException("unknown command " + a[0]);
        }
    }

    /** A document with every field set (first image) and every nullable field null (second image). */
    private static String sampleDocument() {
        DeviceEvalJson.App app = new DeviceEvalJson.App();
        app.packageName = "org.edgekd.demo";
        app.versionName = "0.1.0";
        app.versionCode = 1;
        DeviceEvalJson.Device dev = new DeviceEvalJson.Device();
        dev.manufacturer = "Google";
        dev.brand = "google";
        dev.model = "Pixel 7";
        dev.device = "panther";
        dev.hardware = "panther";
        dev.board = "panther";
        dev.androidRelease = "14";
        dev.sdkInt = 34;
        dev.socManufacturer = "Google";
        dev.socModel = "GS201";
        dev.abis = new String[] {"arm64-v8a", "armeabi-v7a"};
        DeviceEvalJson.Runtime rt = new DeviceEvalJson.Runtime();
        rt.modelFile = "student \"int8\".tflite";
        rt.modelBytes = 123456;
        rt.scheme = "300w";
        rt.numPoints = 3;
        rt.inputSize = 128;
        rt.inputType = "int8";
        rt.outputType = "int8";
        rt.delegateRequested = "gpu";
        rt.delegate = "cpu";
        rt.threads = 4;
        rt.xnnpack = true;
        rt.protocol = "detector";
        rt.warmup = 3;
        rt.detectorModel = "face_detection_short_range.tflite";
        rt.detectorMinConfidence = 0.5f;
        rt.litertVersion = "2.16.1";
        rt.modelInitMs = 12.5;
        rt.detectorInitMs = 30.25;
        rt.wallS = 4.5;
        List<DeviceEvalJson.Image> images = new ArrayList<DeviceEvalJson.Image>();
        DeviceEvalJson.Image full = new DeviceEvalJson.Image();
        full.file = "000000.png";
        full.width = 640;
        full.height = 480;
        full.faces = 2;
        full.score = 0.93f;
        full.detectorBox = new double[] {100, 80, 120, 120};
        full.box = new double[] {160.5, 150.25, 118.0};
        full.points = new float[] {120.5f, 130.25f, 200f, 131f, 160f, 190.75f};
        full.timings.decode = 3.0;
        full.timings.detector = 2.5;
        full.timings.crop = 0.4;
        full.timings.inference = 1.6;
        full.timings.landmarks = 2.1;
        full.timings.total = 4.6;
        full.error = null;
        images.add(full);
        DeviceEvalJson.Image miss = new DeviceEvalJson.Image();
        miss.file = "000001.png";
        miss.width = 320;
        miss.height = 240;
        miss.timings.decode = 1.0;
        miss.timings.detector = Double.NaN;
        miss.error = "no face\tfound";
        images.add(miss);
        return DeviceEvalJson.document("run-1", DeviceEvalJson.STATUS_OK, null, app, dev, rt, images);
    }

    private static String constants() throws IllegalAccessException {
        StringBuilder sb = new StringBuilder("{");
        for (Field field : DeviceEvalJson.class.getDeclaredFields()) {
            int mod = field.getModifiers();
            if (Modifier.isPublic(mod) && Modifier.isStatic(mod) && field.getType() == String.class) {
                if (sb.length() > 1) {
                    sb.append(", ");
                }
                sb.append('"').append(field.getName()).append("\": \"").append(field.get(null)).append('"');
            }
        }
        return sb.append('}').toString();
    }

    private static CropSpec spec(String[] a, int i) {
        return new CropSpec(Integer.parseInt(a[i]), d(a[i + 1]), d(a[i + 2]), d(a[i + 3]), d(a[i + 4]));
    }

    private static int[] argb(byte[] rgb, int n) {
        int[] out = new int[n];
        for (int i = 0; i < n; i++) {
            out[i] = 0xFF000000 | ((rgb[3 * i] & 0xFF) << 16) | ((rgb[3 * i + 1] & 0xFF) << 8) | (rgb[3 * i + 2] & 0xFF);
        }
        return out;
    }

    private static byte[] rgb(int[] argb) {
        byte[] out = new byte[argb.length * 3];
        for (int i = 0; i < argb.length; i++) {
            out[3 * i] = (byte) (argb[i] >> 16);
            out[3 * i + 1] = (byte) (argb[i] >> 8);
            out[3 * i + 2] = (byte) argb[i];
        }
        return out;
    }

    private static double d(String s) {
        return Double.parseDouble(s);
    }

    private static float f(String s) {
        return Float.parseFloat(s);
    }

    private static float[] floats(String[] a, int from, int to) {
        float[] out = new float[to - from];
        for (int i = from; i < to; i++) {
            out[i - from] = Float.parseFloat(a[i]);
        }
        return out;
    }

    private static String join(double[] v) {
        StringBuilder sb = new StringBuilder();
        for (double x : v) {
            if (sb.length() > 0) {
                sb.append(' ');
            }
            sb.append(String.format(Locale.ROOT, "%.17g", x));
        }
        return sb.toString();
    }

    private static String join(float[] v) {
        double[] d = new double[v.length];
        for (int i = 0; i < v.length; i++) {
            d[i] = v[i];
        }
        return join(d);
    }
}
