package org.edgekd.demo;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.Charset;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The named metadata buffers of a .tflite model, read straight from its flatbuffer.
 *
 * <p>Plain Java (no TFLite support library, no Android classes) so the host's tests compile and run it against a
 * model written by {@code edgekd.metadata.embed}. Only the few fields we need are decoded; slot numbers follow the
 * TFLite schema (schema.fbs): Model {version 0, operator_codes 1, subgraphs 2, description 3, buffers 4,
 * metadata_buffer 5, metadata 6}, Metadata {name 0, buffer 1}, Buffer {data 0, offset 1, size 2}. A Buffer whose
 * bytes live outside the flatbuffer (models over 2 GB) has offset/size counted from the start of the file.
 */
public final class TfliteMetadata {
    /** Entry name under which edgekd stores its JSON (edgekd/metadata.py METADATA_NAME). */
    public static final String EDGEKD = "edgekd";

    private static final int MODEL_BUFFERS = 4;
    private static final int MODEL_METADATA = 6;
    private static final int METADATA_NAME = 0;
    private static final int METADATA_BUFFER = 1;
    private static final int BUFFER_DATA = 0;
    private static final int BUFFER_OFFSET = 1;
    private static final int BUFFER_SIZE = 2;
    private static final Charset UTF8 = Charset.forName("UTF-8");

    private TfliteMetadata() {}

    /** The edgekd JSON of a model, or null when the model has no such entry. */
    public static String readEdgekdJson(ByteBuffer model) {
        byte[] raw = readAll(model).get(EDGEKD);
        return raw == null ? null : new String(raw, UTF8);
    }

    /** Every metadata entry of the model, name to bytes, in file order. */
    public static Map<String, byte[]> readAll(ByteBuffer model) {
        ByteBuffer b = model.duplicate().order(ByteOrder.LITTLE_ENDIAN);
        int limit = b.limit();
        if (limit < 8 || b.get(4) != 'T' || b.get(5) != 'F' || b.get(6) != 'L' || b.get(7) != '3') {
            throw new IllegalArgumentException("not a TFLite model (no TFL3 flatbuffer identifier)");
        }
        Map<String, byte[]> out = new LinkedHashMap<String, byte[]>();
        try {
            int root = deref(b, 0);
            int metadata = field(b, root, MODEL_METADATA);
            if (metadata == 0) {
                return out;
            }
            int buffers = field(b, root, MODEL_BUFFERS);
            int metaVec = deref(b, metadata);
            int count = b.getInt(metaVec);
            for (int i = 0; i < count; i++) {
                int entry = deref(b, metaVec + 4 + 4 * i);
                int nameField = field(b, entry, METADATA_NAME);
                String name = nameField == 0 ? "" : string(b, deref(b, nameField));
                int bufField = field(b, entry, METADATA_BUFFER);
                long index = bufField == 0 ? 0 : (b.getInt(bufField) & 0xFFFFFFFFL);
                out.put(name, buffer(b, buffers, index));
            }
        } catch (IndexOutOfBoundsException e) {
            throw new IllegalArgumentException("truncated or corrupt TFLite flatbuffer", e);
        }
        return out;
    }

    private static byte[] buffer(ByteBuffer b, int buffersField, long index) {
        if (buffersField == 0) {
            throw new IllegalArgumentException("metadata points at buffer " + index + " but the model has no buffers");
        }
        int vec = deref(b, buffersField);
        int count = b.getInt(vec);
        if (index < 0 || index >= count) {
            throw new IllegalArgumentException("metadata buffer index " + index + " out of range (" + count + ")");
        }
        int table = deref(b, vec + 4 + 4 * (int) index);
        int data = field(b, table, BUFFER_DATA);
        if (data != 0) {
            int v = deref(b, data);
            int n = b.getInt(v);
            return bytes(b, v + 4, n);
        }
        int off = field(b, table, BUFFER_OFFSET);
        int size = field(b, table, BUFFER_SIZE);
        if (off != 0 && size != 0) {
            long start = b.getLong(off);
            long n = b.getLong(size);
            if (start > 1 && start + n <= b.limit()) {
                return bytes(b, (int) start, (int) n);
            }
        }
        return new byte[0];
    }

    /** Absolute position of a table field, or 0 when the field is absent (default value). */
    private static int field(ByteBuffer b, int table, int slot) {
        int vtable = table - b.getInt(table);
        int vtableLength = b.getShort(vtable) & 0xFFFF;
        int entry = 4 + 2 * slot;
        if (entry >= vtableLength) {
            return 0;
        }
        int offset = b.getShort(vtable + entry) & 0xFFFF;
        return offset == 0 ? 0 : table + offset;
    }

    /** Follows a uoffset stored at {@code pos}. */
    private static int deref(ByteBuffer b, int pos) {
        return pos + b.getInt(pos);
    }

    private static String string(ByteBuffer b, int pos) {
        return new String(bytes(b, pos + 4, b.getInt(pos)), UTF8);
    }

    private static byte[] bytes(ByteBuffer b, int start, int n) {
        if (n < 0 || start < 0 || start + n > b.limit()) {
            throw new IndexOutOfBoundsException("vector outside the file");
        }
        byte[] out = new byte[n];
        for (int i = 0; i < n; i++) {
            out[i] = b.get(start + i);
        }
        return out;
    }
}
