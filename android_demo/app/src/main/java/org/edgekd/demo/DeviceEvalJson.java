package org.edgekd.demo;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * The evaluation-mode files: every key the app writes or reads, and the writer of result.json.
 *
 * <p>The format is defined once, by the JSON Schema {@code edgekd/bench/device_eval.schema.json} in the edgekd
 * package (format "edgekd-device-eval/1"; its $defs/request is the request.json the host pushes). This class is plain
 * Java without org.json so the host's tests compile it, write a document with every field set and validate it
 * against that schema, and read the key constants back; a renamed key here fails those tests.
 */
public final class DeviceEvalJson {
    public static final String FORMAT = "edgekd-device-eval/1";
    public static final String REQUEST_FORMAT = "edgekd-device-request/1";

    // Files inside <external files dir>/eval/<run>/
    public static final String EVAL_DIR = "eval";
    public static final String IMAGES_DIR = "images";
    public static final String REQUEST_FILE = "request.json";
    public static final String RESULT_FILE = "result.json";
    public static final String DONE_FILE = "done";

    // am start extras (adb shell am start -n org.edgekd.demo/.EvalActivity --es run RUN ...)
    public static final String EXTRA_RUN = "run";
    public static final String EXTRA_MODEL = "model";
    public static final String EXTRA_THREADS = "threads";
    public static final String EXTRA_DELEGATE = "delegate";
    public static final String EXTRA_WARMUP = "warmup";
    public static final String EXTRA_PREPARE = "prepare";

    // request.json
    public static final String REQ_FORMAT = "format";
    public static final String REQ_PROTOCOL = "protocol";
    public static final String REQ_IMAGES = "images";
    public static final String REQ_FILE = "file";
    public static final String REQ_BOX = "box";
    public static final String REQ_MATCH = "match";

    // result.json, top level
    public static final String K_FORMAT = "format";
    public static final String K_RUN_ID = "run_id";
    public static final String K_STATUS = "status";
    public static final String K_ERROR = "error";
    public static final String K_APP = "app";
    public static final String K_DEVICE = "device";
    public static final String K_RUNTIME = "runtime";
    public static final String K_IMAGES = "images";
    // app
    public static final String K_PACKAGE = "package";
    public static final String K_VERSION_NAME = "version_name";
    public static final String K_VERSION_CODE = "version_code";
    // device
    public static final String K_MANUFACTURER = "manufacturer";
    public static final String K_BRAND = "brand";
    public static final String K_MODEL = "model";
    public static final String K_DEVICE_NAME = "device";
    public static final String K_HARDWARE = "hardware";
    public static final String K_BOARD = "board";
    public static final String K_ANDROID_RELEASE = "android_release";
    public static final String K_SDK_INT = "sdk_int";
    public static final String K_SOC_MANUFACTURER = "soc_manufacturer";
    public static final String K_SOC_MODEL = "soc_model";
    public static final String K_ABIS = "abis";
    // runtime
    public static final String K_MODEL_FILE = "model_file";
    public static final String K_MODEL_BYTES = "model_bytes";
    public static final String K_SCHEME = "scheme";
    public static final String K_NUM_POINTS = "num_points";
    public static final String K_INPUT_SIZE = "input_size";
    public static final String K_INPUT_TYPE = "input_type";
    public static final String K_OUTPUT_TYPE = "output_type";
    public static final String K_DELEGATE_REQUESTED = "delegate_requested";
    public static final String K_DELEGATE = "delegate";
    public static final String K_THREADS = "threads";
    public static final String K_XNNPACK = "xnnpack";
    public static final String K_PROTOCOL = "protocol";
    public static final String K_WARMUP = "warmup";
    public static final String K_DETECTOR_MODEL = "detector_model";
    public static final String K_DETECTOR_MIN_CONFIDENCE = "detector_min_confidence";
    public static final String K_LITERT_VERSION = "litert_version";
    public static final String K_MODEL_INIT_MS = "model_init_ms";
    public static final String K_DETECTOR_INIT_MS = "detector_init_ms";
    public static final String K_WALL_S = "wall_s";
    // images[]
    public static final String K_FILE = "file";
    public static final String K_WIDTH = "width";
    public static final String K_HEIGHT = "height";
    public static final String K_FACES = "faces";
    public static final String K_SCORE = "score";
    public static final String K_DETECTOR_BOX = "detector_box";
    public static final String K_BOX = "box";
    public static final String K_POINTS = "points";
    public static final String K_TIMINGS_MS = "timings_ms";
    // timings_ms
    public static final String T_DECODE = "decode";
    public static final String T_DETECTOR = "detector";
    public static final String T_CROP = "crop";
    public static final String T_INFERENCE = "inference";
    public static final String T_LANDMARKS = "landmarks";
    public static final String T_TOTAL = "total";

    public static final String STATUS_OK = "ok";
    public static final String STATUS_ERROR = "error";

    private DeviceEvalJson() {}

    public static final class App {
        public String packageName = "";
        public String versionName;
        public long versionCode;

        Map<String, Object> toMap() {
            Map<String, Object> m = new LinkedHashMap<String, Object>();
            m.put(K_PACKAGE, packageName);
            m.put(K_VERSION_NAME, versionName);
            m.put(K_VERSION_CODE, versionCode);
            return m;
        }
    }

    public static final class Device {
        public String manufacturer, brand, model, device, hardware, board, androidRelease;
        public int sdkInt = 1;
        public String socManufacturer, socModel; // null below API 31
        public String[] abis = new String[0];

        Map<String, Object> toMap() {
            Map<String, Object> m = new LinkedHashMap<String, Object>();
            m.put(K_MANUFACTURER, manufacturer);
            m.put(K_BRAND, brand);
            m.put(K_MODEL, model);
            m.put(K_DEVICE_NAME, device);
            m.put(K_HARDWARE, hardware);
            m.put(K_BOARD, board);
            m.put(K_ANDROID_RELEASE, androidRelease);
            m.put(K_SDK_INT, sdkInt);
            m.put(K_SOC_MANUFACTURER, socManufacturer);
            m.put(K_SOC_MODEL, socModel);
            List<Object> a = new ArrayList<Object>();
            for (String s : abis) {
                a.add(s);
            }
            m.put(K_ABIS, a);
            return m;
        }
    }

    public static final class Runtime {
        public String modelFile = "";
        public long modelBytes;
        public String scheme;
        public int numPoints, inputSize;
        public String inputType = "unknown", outputType = "unknown";
        public String delegateRequested = "cpu", delegate = "none";
        public int threads = 1;
        public boolean xnnpack = true;
        public String protocol = "detector";
        public int warmup;
        public String detectorModel;
        public float detectorMinConfidence;
        public String litertVersion;
        public Double modelInitMs, detectorInitMs, wallS;

        Map<String, Object> toMap() {
            Map<String, Object> m = new LinkedHashMap<String, Object>();
            m.put(K_MODEL_FILE, modelFile);
            m.put(K_MODEL_BYTES, modelBytes);
            m.put(K_SCHEME, scheme);
            m.put(K_NUM_POINTS, numPoints);
            m.put(K_INPUT_SIZE, inputSize);
            m.put(K_INPUT_TYPE, inputType);
            m.put(K_OUTPUT_TYPE, outputType);
            m.put(K_DELEGATE_REQUESTED, delegateRequested);
            m.put(K_DELEGATE, delegate);
            m.put(K_THREADS, threads);
            m.put(K_XNNPACK, xnnpack);
            m.put(K_PROTOCOL, protocol);
            m.put(K_WARMUP, warmup);
            m.put(K_DETECTOR_MODEL, detectorModel);
            m.put(K_DETECTOR_MIN_CONFIDENCE, detectorMinConfidence);
            m.put(K_LITERT_VERSION, litertVersion);
            m.put(K_MODEL_INIT_MS, modelInitMs);
            m.put(K_DETECTOR_INIT_MS, detectorInitMs);
            m.put(K_WALL_S, wallS);
            return m;
        }
    }

    /** Stage times in milliseconds; null where the stage did not run. */
    public static final class Timings {
        public Double decode, detector, crop, inference, landmarks, total;

        Map<String, Object> toMap() {
            Map<String, Object> m = new LinkedHashMap<String, Object>();
            m.put(T_DECODE, decode);
            m.put(T_DETECTOR, detector);
            m.put(T_CROP, crop);
            m.put(T_INFERENCE, inference);
            m.put(T_LANDMARKS, landmarks);
            m.put(T_TOTAL, total);
            return m;
        }
    }

    public static final class Image {
        public String file = "";
        public int width, height, faces;
        public Float score;
        public double[] detectorBox; // x, y, w, h
        public double[] box; // cx, cy, side
        public float[] points; // x0, y0, x1, y1, ... in the image
        public Timings timings = new Timings();
        public String error;

        Map<String, Object> toMap() {
            Map<String, Object> m = new LinkedHashMap<String, Object>();
            m.put(K_FILE, file);
            m.put(K_WIDTH, width);
            m.put(K_HEIGHT, height);
            m.put(K_FACES, faces);
            m.put(K_SCORE, score);
            m.put(K_DETECTOR_BOX, numbers(detectorBox));
            m.put(K_BOX, numbers(box));
            List<Object> pts = null;
            if (points != null) {
                pts = new ArrayList<Object>();
                for (int i = 0; i + 1 < points.length; i += 2) {
                    List<Object> xy = new ArrayList<Object>();
                    xy.add(points[i]);
                    xy.add(points[i + 1]);
                    pts.add(xy);
                }
            }
            m.put(K_POINTS, pts);
            m.put(K_TIMINGS_MS, timings.toMap());
            m.put(K_ERROR, error);
            return m;
        }
    }

    /** The whole result.json text. */
    public static String document(String runId, String status, String error, App app, Device device,
                                  Runtime runtime, List<Image> images) {
        Map<String, Object> m = new LinkedHashMap<String, Object>();
        m.put(K_FORMAT, FORMAT);
        m.put(K_RUN_ID, runId);
        m.put(K_STATUS, status);
        m.put(K_ERROR, error);
        m.put(K_APP, app.toMap());
        m.put(K_DEVICE, device.toMap());
        m.put(K_RUNTIME, runtime.toMap());
        List<Object> list = new ArrayList<Object>();
        for (Image image : images) {
            list.add(image.toMap());
        }
        m.put(K_IMAGES, list);
        StringBuilder sb = new StringBuilder();
        write(sb, m);
        return sb.append('\n').toString();
    }

    private static List<Object> numbers(double[] values) {
        if (values == null) {
            return null;
        }
        List<Object> out = new ArrayList<Object>();
        for (double v : values) {
            out.add(v);
        }
        return out;
    }

    private static void write(StringBuilder sb, Object v) {
        if (v == null) {
            sb.append("null");
        } else if (v instanceof String) {
            quote(sb, (String) v);
        } else if (v instanceof Boolean || v instanceof Integer || v instanceof Long) {
            sb.append(v.toString());
        } else if (v instanceof Float || v instanceof Double) {
            double d = ((Number) v).doubleValue();
            // NaN and infinities are not JSON; a stage that produced one did not give a usable value.
            sb.append(Double.isNaN(d) || Double.isInfinite(d) ? "null"
                    : (v instanceof Float ? Float.toString((Float) v) : Double.toString(d)));
        } else if (v instanceof Map) {
            sb.append('{');
            boolean first = true;
            for (Map.Entry<?, ?> e : ((Map<?, ?>) v).entrySet()) {
                if (!first) {
                    sb.append(", ");
                }
                first = false;
                quote(sb, String.valueOf(e.getKey()));
                sb.append(": ");
                write(sb, e.getValue());
            }
            sb.append('}');
        } else if (v instanceof List) {
            sb.append('[');
            boolean first = true;
            for (Object o : (List<?>) v) {
                if (!first) {
                    sb.append(", ");
                }
                first = false;
                write(sb, o);
            }
            sb.append(']');
        } else {
            throw new IllegalArgumentException("cannot write " + v.getClass() + " as JSON");
        }
    }

    private static void quote(StringBuilder sb, String s) {
        sb.append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"': sb.append("\\\""); break;
                case '\\': sb.append("\\\\"); break;
                case '\n': sb.append("\\n"); break;
                case '\r': sb.append("\\r"); break;
                case '\t': sb.append("\\t"); break;
                default:
                    if (c < 0x20) {
                        sb.append(String.format(Locale.ROOT, "\\u%04x", (int) c));
                    } else {
                        sb.append(c);
                    }
            }
        }
        sb.append('"');
    }
}
