package dev.lopper.model.io;

import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.lopper.model.ModelFormatException;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Comparator;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * One {@code .safetensors} file, opened read-only. The header is parsed and validated on open; tensor data is
 * memory-mapped on demand, one tensor at a time, so a checkpoint never has to fit in the Java heap.
 *
 * <p>Format: 8-byte little-endian header length N, N bytes of JSON {@code {name: {dtype, shape, data_offsets:
 * [begin, end]}, "__metadata__": {...}}}, then the data; offsets are relative to the end of the header.
 */
public final class SafeTensorsFile implements AutoCloseable {
    private static final ObjectMapper JSON = new ObjectMapper();

    private final Path file;
    private final FileChannel channel;
    private final Map<String, TensorInfo> tensors;
    private final Map<String, String> metadata;

    private SafeTensorsFile(Path file, FileChannel channel, Map<String, TensorInfo> tensors, Map<String, String> metadata) {
        this.file = file;
        this.channel = channel;
        this.tensors = tensors;
        this.metadata = metadata;
    }

    /** Opens and validates a file; every problem is a {@link ModelFormatException} naming the file. */
    public static SafeTensorsFile open(Path file) {
        FileChannel ch;
        try {
            ch = FileChannel.open(file, StandardOpenOption.READ);
        } catch (IOException e) {
            throw ModelFormatException.file(file, "cannot open: " + e);
        }
        try {
            long size = ch.size();
            if (size < 8) {
                throw ModelFormatException.file(file, "truncated: " + size + " bytes, expected at least the 8-byte header length");
            }
            ByteBuffer lenBuf = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN);
            readFully(ch, lenBuf, 0);
            long headerLen = lenBuf.flip().getLong();
            if (headerLen <= 0 || headerLen > SafeTensors.MAX_HEADER_BYTES || 8 + headerLen > size) {
                throw ModelFormatException.file(file, "corrupt header length " + headerLen + " (file has " + size
                        + " bytes); expected a JSON header of at most min(file size - 8, 100 MB) bytes");
            }
            ByteBuffer header = ByteBuffer.allocate((int) headerLen);
            readFully(ch, header, 8);
            long dataStart = 8 + headerLen;
            SafeTensorsFile f = parseHeader(file, ch, header.array(), dataStart, size - dataStart);
            return f;
        } catch (IOException e) {
            closeQuietly(ch);
            throw ModelFormatException.file(file, "cannot read: " + e);
        } catch (RuntimeException e) {
            closeQuietly(ch);
            throw e;
        }
    }

    private static SafeTensorsFile parseHeader(Path file, FileChannel ch, byte[] header, long dataStart, long dataSize) {
        JsonNode root;
        try {
            root = JSON.readTree(header);
        } catch (IOException e) {
            throw ModelFormatException.file(file, "header is not valid JSON: " + firstLine(e.getMessage()));
        }
        if (root == null || !root.isObject()) {
            throw ModelFormatException.file(file, "header is not a JSON object");
        }
        Map<String, String> metadata = new LinkedHashMap<>();
        Map<String, TensorInfo> tensors = new LinkedHashMap<>();
        for (Iterator<Map.Entry<String, JsonNode>> it = root.fields(); it.hasNext(); ) {
            Map.Entry<String, JsonNode> e = it.next();
            String name = e.getKey();
            JsonNode t = e.getValue();
            if (name.equals("__metadata__")) {
                t.fields().forEachRemaining(m -> metadata.put(m.getKey(), m.getValue().asText()));
                continue;
            }
            String where = "tensor '" + name + "'";
            String dtypeName = t.path("dtype").asText(null);
            DataType dtype = dtypeName == null ? null : SafeTensors.type(dtypeName);
            if (dtype == null) {
                throw ModelFormatException.file(file, where + ": dtype " + (dtypeName == null ? "missing" : "'" + dtypeName + "'")
                        + ", expected one of " + new TreeMap<>(SafeTensors.DTYPES).keySet());
            }
            JsonNode shapeNode = t.path("shape");
            if (!shapeNode.isArray()) {
                throw ModelFormatException.file(file, where + ": shape missing, expected an array of dimensions");
            }
            long[] dims = new long[shapeNode.size()];
            for (int i = 0; i < dims.length; i++) {
                JsonNode d = shapeNode.get(i);
                // canConvertToLong: a dimension past 2^63 must be refused, not wrapped into a small one
                if (!d.isIntegralNumber() || !d.canConvertToLong() || d.longValue() < 0) {
                    throw ModelFormatException.file(file, where + ": shape " + shapeNode + ", expected non-negative integers");
                }
                dims[i] = d.longValue();
            }
            long expected = byteLength(file, where, shapeNode, dims, dtype);
            JsonNode off = t.path("data_offsets");
            if (!off.isArray() || off.size() != 2 || !isLong(off.get(0)) || !isLong(off.get(1))) {
                throw ModelFormatException.file(file, where + ": data_offsets " + off + ", expected [begin, end]");
            }
            long begin = off.get(0).longValue();
            long end = off.get(1).longValue();
            if (begin < 0 || end < begin || end > dataSize) {
                throw ModelFormatException.file(file, where + ": data_offsets [" + begin + ", " + end + "] outside the data section of "
                        + dataSize + " bytes (truncated or corrupt file)");
            }
            if (end - begin != expected) {
                throw ModelFormatException.file(file, where + ": " + (end - begin) + " bytes of data, expected " + expected
                        + " for shape " + shapeNode + " of " + dtypeName);
            }
            tensors.put(name, new TensorInfo(name, dtype, new Shape(dims), file, dataStart + begin, end - begin));
        }
        List<TensorInfo> byOffset = new ArrayList<>(tensors.values());
        byOffset.sort(Comparator.comparingLong(TensorInfo::begin));
        for (int i = 1; i < byOffset.size(); i++) {
            TensorInfo a = byOffset.get(i - 1);
            TensorInfo b = byOffset.get(i);
            if (b.begin() < a.begin() + a.byteLength()) {
                throw ModelFormatException.file(file, "tensors '" + a.name() + "' and '" + b.name() + "' overlap in the data section");
            }
        }
        return new SafeTensorsFile(file, ch, Collections.unmodifiableMap(tensors), Collections.unmodifiableMap(metadata));
    }

    /**
     * Bytes a tensor of this shape and dtype holds; refused when the count overflows a long (then no file could
     * hold it, and the comparison with the data offsets would be meaningless).
     */
    private static long byteLength(Path file, String where, JsonNode shapeNode, long[] dims, DataType dtype) {
        for (long d : dims) {
            if (d == 0) {
                return 0;
            }
        }
        try {
            long n = dtype.getNumOfBytes();
            for (long d : dims) {
                n = Math.multiplyExact(n, d);
            }
            return n;
        } catch (ArithmeticException e) {
            throw ModelFormatException.file(file, where + ": shape " + shapeNode + " has more elements than a file can hold");
        }
    }

    private static boolean isLong(JsonNode n) {
        return n.isIntegralNumber() && n.canConvertToLong();
    }

    public Path path() {
        return file;
    }

    /** Tensors in header order. */
    public Map<String, TensorInfo> tensors() {
        return tensors;
    }

    public Map<String, String> metadata() {
        return metadata;
    }

    /** The raw little-endian bytes of a tensor, memory-mapped (not copied into the heap). */
    public ByteBuffer map(TensorInfo info) {
        try {
            return channel.map(FileChannel.MapMode.READ_ONLY, info.begin(), info.byteLength()).order(ByteOrder.LITTLE_ENDIAN);
        } catch (IOException e) {
            throw ModelFormatException.file(file, "cannot map tensor '" + info.name() + "': " + e);
        }
    }

    /** A tensor's bytes read by range through this file's channel (no mapping); see {@link StoredBytes}. */
    public StoredBytes stored(TensorInfo info) {
        return new StoredBytes(file, channel, info.begin(), info.byteLength());
    }

    @Override
    public void close() {
        closeQuietly(channel);
    }

    private static void readFully(FileChannel ch, ByteBuffer buf, long pos) throws IOException {
        while (buf.hasRemaining()) {
            int n = ch.read(buf, pos + buf.position());
            if (n < 0) {
                throw new IOException("unexpected end of file");
            }
        }
    }

    private static void closeQuietly(FileChannel ch) {
        try {
            ch.close();
        } catch (IOException ignored) {
            // nothing to do: the file was only read
        }
    }

    private static String firstLine(String s) {
        return s == null ? "" : s.lines().findFirst().orElse("");
    }
}
