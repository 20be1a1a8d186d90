package dev.lopper.model.io;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import dev.lopper.model.ModelFormatException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class SafeTensorsTest {
    @TempDir
    Path tmp;

    private static ByteBuffer floats(float... v) {
        ByteBuffer b = ByteBuffer.allocate(v.length * 4).order(ByteOrder.LITTLE_ENDIAN);
        for (float f : v) {
            b.putFloat(f);
        }
        return b.flip();
    }

    /** Writes a file with a hand-made header and data section. */
    private Path raw(String header, byte[] data) throws Exception {
        byte[] h = header.replace('\'', '"').getBytes(StandardCharsets.UTF_8);
        ByteBuffer b = ByteBuffer.allocate(8 + h.length + data.length).order(ByteOrder.LITTLE_ENDIAN);
        b.putLong(h.length).put(h).put(data);
        Path p = tmp.resolve("t.safetensors");
        Files.write(p, b.array());
        return p;
    }

    @Test
    void writeThenReadEveryFloatType() throws Exception {
        Path p = tmp.resolve("a.safetensors");
        float[] values = {1.5f, -2.25f, 3.0f, 0.125f, -0.5f, 7.0f};
        SafeTensorsWriter.write(p, List.of(
                new SafeTensorsWriter.Entry("f32", DataType.FLOAT32, new Shape(2, 3), () -> floats(values)),
                new SafeTensorsWriter.Entry("bf16", DataType.BFLOAT16, new Shape(6), () -> BFloat16.fromFloat32(values))),
                Map.of("format", "pt"));
        try (SafeTensorsFile f = SafeTensorsFile.open(p); NDManager m = NDManager.newBaseManager(Device.cpu())) {
            assertEquals(Map.of("format", "pt"), f.metadata());
            assertEquals(new Shape(2, 3), f.tensors().get("f32").shape());
            assertEquals(0, f.tensors().get("f32").begin() % 8, "data section is 8-byte aligned");
        }
        Files.move(p, tmp.resolve(Checkpoint.SINGLE_FILE));
        try (Checkpoint c = Checkpoint.open(tmp); NDManager m = NDManager.newBaseManager(Device.cpu())) {
            assertArrayEquals(values, c.load("f32", m).toFloatArray());
            // these values are exact in bf16
            assertArrayEquals(values, c.load("bf16", m).toFloatArray());
            NDArray half = c.load("f32", m, DataType.FLOAT16);
            assertEquals(DataType.FLOAT16, half.getDataType());
        }
        assertTrue(Files.list(tmp).noneMatch(x -> x.toString().endsWith(".tmp")), "no temp file left");
    }

    /**
     * The fast load path (widened in parallel blocks straight into the tensor's memory) against a plain per-element
     * widening: every one of the 65,536 bf16 bit patterns (NaNs, infinities, subnormals, -0), repeated past two block
     * boundaries with a ragged tail, compared bit for bit; and loaded as FLOAT16 through the same path.
     */
    @Test
    void bf16LoadWidensEveryBitPatternExactly() throws Exception {
        int n = (1 << 21) + 12_345; // two full blocks of 1 Mi values and a partial third
        ByteBuffer bf16 = ByteBuffer.allocate(n * 2).order(ByteOrder.LITTLE_ENDIAN);
        for (int i = 0; i < n; i++) {
            bf16.putShort((short) (i * 40_503)); // odd multiplier: every pattern, in scrambled order
        }
        bf16.flip();
        Path dir = tmp.resolve("widen");
        Files.createDirectories(dir);
        SafeTensorsWriter.write(dir.resolve(Checkpoint.SINGLE_FILE), List.of(
                new SafeTensorsWriter.Entry("w", DataType.BFLOAT16, new Shape(n / 7, 7), () -> bf16.duplicate().limit((n / 7) * 7 * 2)),
                new SafeTensorsWriter.Entry("all", DataType.BFLOAT16, new Shape(n), bf16::duplicate)), Map.of());
        try (Checkpoint c = Checkpoint.open(dir); NDManager m = NDManager.newBaseManager(Device.cpu())) {
            float[] loaded = c.load("all", m).toFloatArray();
            float[] rows = c.load("w", m).toFloatArray();
            assertEquals(new Shape(n / 7, 7), c.load("w", m).getShape());
            for (int i = 0; i < n; i++) {
                int expected = (bf16.getShort(2 * i) & 0xFFFF) << 16;
                if (Float.floatToRawIntBits(loaded[i]) != expected || i < rows.length && Float.floatToRawIntBits(rows[i]) != expected) {
                    throw new AssertionError("value " + i + ": bf16 0x" + Integer.toHexString(expected >>> 16) + " loaded as 0x"
                            + Integer.toHexString(Float.floatToRawIntBits(loaded[i])));
                }
            }
            NDArray half = c.load("w", m, DataType.FLOAT16);
            assertEquals(DataType.FLOAT16, half.getDataType());
            NDArray viaFp32 = c.load("w", m).toType(DataType.FLOAT16, false);
            assertTrue(half.isNaN().eq(viaFp32.isNaN()).all().getBoolean() && half.eq(viaFp32).logicalOr(half.isNaN()).all().getBoolean(),
                    "FLOAT16 load = fp32 load cast to FLOAT16");
        }
    }

    @Test
    void bf16RoundsToNearestEven() {
        // 1 + 2^-8 is exactly halfway between two bf16 values: ties go to the even mantissa (1.0)
        assertEquals((short) 0x3F80, BFloat16.round(1.00390625f));
        // just above halfway rounds up
        assertEquals((short) 0x3F81, BFloat16.round(1.0040f));
    }

    @Test
    void truncatedFile() throws Exception {
        Path p = tmp.resolve("x.safetensors");
        Files.write(p, new byte[] {1, 2, 3});
        ModelFormatException e = assertThrows(ModelFormatException.class, () -> SafeTensorsFile.open(p));
        assertTrue(e.getMessage().startsWith(p + ": truncated: 3 bytes"), e.getMessage());
    }

    @Test
    void dataSectionShorterThanHeaderSays() throws Exception {
        Path p = raw("{'w':{'dtype':'F32','shape':[2,2],'data_offsets':[0,16]}}", new byte[8]);
        ModelFormatException e = assertThrows(ModelFormatException.class, () -> SafeTensorsFile.open(p));
        assertTrue(e.getMessage().contains("tensor 'w': data_offsets [0, 16] outside the data section of 8 bytes"), e.getMessage());
    }

    @Test
    void unknownDtype() throws Exception {
        Path p = raw("{'w':{'dtype':'Q4','shape':[2],'data_offsets':[0,2]}}", new byte[2]);
        ModelFormatException e = assertThrows(ModelFormatException.class, () -> SafeTensorsFile.open(p));
        assertTrue(e.getMessage().contains("tensor 'w': dtype 'Q4', expected one of"), e.getMessage());
    }

    @Test
    void shapeDisagreesWithByteLength() throws Exception {
        Path p = raw("{'w':{'dtype':'F32','shape':[3],'data_offsets':[0,8]}}", new byte[8]);
        ModelFormatException e = assertThrows(ModelFormatException.class, () -> SafeTensorsFile.open(p));
        assertTrue(e.getMessage().contains("8 bytes of data, expected 12 for shape [3] of F32"), e.getMessage());
    }

    @Test
    void overlappingTensors() throws Exception {
        Path p = raw("{'a':{'dtype':'F32','shape':[2],'data_offsets':[0,8]},'b':{'dtype':'F32','shape':[2],'data_offsets':[4,12]}}", new byte[12]);
        ModelFormatException e = assertThrows(ModelFormatException.class, () -> SafeTensorsFile.open(p));
        assertTrue(e.getMessage().contains("overlap"), e.getMessage());
    }

    @Test
    void headerNotJson() throws Exception {
        Path p = raw("{not json", new byte[0]);
        ModelFormatException e = assertThrows(ModelFormatException.class, () -> SafeTensorsFile.open(p));
        assertTrue(e.getMessage().contains("header is not valid JSON"), e.getMessage());
    }

    @Test
    void missingTensorNamesCheckpoint() throws Exception {
        Path p = raw("{'a':{'dtype':'F32','shape':[1],'data_offsets':[0,4]}}", new byte[4]);
        Files.move(p, tmp.resolve(Checkpoint.SINGLE_FILE));
        try (Checkpoint c = Checkpoint.open(tmp)) {
            ModelFormatException e = assertThrows(ModelFormatException.class, () -> c.info("b"));
            assertEquals(tmp + ": tensor 'b' is missing from the checkpoint", e.getMessage());
        }
    }

    @Test
    void directoryWithoutSafetensors() throws Exception {
        Files.writeString(tmp.resolve("pytorch_model.bin"), "x");
        ModelFormatException e = assertThrows(ModelFormatException.class, () -> Checkpoint.open(tmp));
        assertTrue(e.getMessage().contains("found pytorch_model.bin; expected model.safetensors or model.safetensors.index.json"), e.getMessage());
    }
}
