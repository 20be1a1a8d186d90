package dev.lopper.model.io;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import dev.lopper.model.WeightNames;
import dev.lopper.model.testing.RandomModels;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;

/** Range reads of stored tensors: embedding rows gathered without a full load, byte-for-byte copies (issue 15 item 3). */
class StoredBytesTest {
    @TempDir
    Path tmp;

    private static final long[] ROWS = {5, 0, 299, 5, 17, 3};

    /** Rows read from the stored matrix equal the same rows of the fully loaded one, bit for bit (BF16 and F32). */
    @Test
    void loadRowsEqualsRowsOfTheFullLoad() throws Exception {
        for (DataType dtype : new DataType[] {DataType.BFLOAT16, DataType.FLOAT32}) {
            Path dir = tmp.resolve(dtype.name());
            RandomModels.write(dir, RandomModels.llama().withDtype(dtype).withShards(2));
            try (Checkpoint c = Checkpoint.open(dir); NDManager m = NDManager.newBaseManager(Device.cpu())) {
                float[] full = c.load(WeightNames.EMBED, m).toFloatArray();
                int h = (int) c.shape(WeightNames.EMBED).get(1);
                NDArray rows = c.loadRows(WeightNames.EMBED, ROWS, m, DataType.FLOAT32);
                assertEquals(ROWS.length, rows.getShape().get(0));
                float[] got = rows.toFloatArray();
                for (int i = 0; i < ROWS.length; i++) {
                    for (int j = 0; j < h; j++) {
                        assertEquals(Float.floatToRawIntBits(full[(int) ROWS[i] * h + j]), Float.floatToRawIntBits(got[i * h + j]),
                                dtype + " row " + ROWS[i] + " col " + j);
                    }
                }
                assertThrows(IndexOutOfBoundsException.class, () -> c.loadRows(WeightNames.EMBED, new long[] {300}, m, DataType.FLOAT32));
            }
        }
    }

    /** Through a TensorMap: base rows come from the file, an override's rows from the array in memory. */
    @Test
    void tensorMapDelegatesRowsAndStoredBytes() throws Exception {
        Path dir = tmp.resolve("m");
        RandomModels.write(dir, RandomModels.llama().withDtype(DataType.BFLOAT16));
        try (Checkpoint c = Checkpoint.open(dir); NDManager m = NDManager.newBaseManager(Device.cpu())) {
            TensorMap map = new TensorMap(c);
            assertArrayEquals(c.loadRows(WeightNames.EMBED, ROWS, m, DataType.FLOAT32).toFloatArray(),
                    map.loadRows(WeightNames.EMBED, ROWS, m, DataType.FLOAT32).toFloatArray(), 0f);
            NDArray replaced = m.arange(300 * 64).toType(DataType.FLOAT32, false).reshape(300, 64);
            map.put(WeightNames.EMBED, replaced);
            assertNull(map.stored(WeightNames.EMBED), "an override has no stored bytes");
            float[] rows = map.loadRows(WeightNames.EMBED, ROWS, m, DataType.FLOAT32).toFloatArray();
            for (int i = 0; i < ROWS.length; i++) {
                assertEquals(ROWS[i] * 64 + 7, rows[i * 64 + 7], 0f);
            }
            try (FileChannel ch = FileChannel.open(tmp.resolve("x"), StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
                assertFalse(map.writeStored(WeightNames.EMBED, ch));
                assertEquals(0, ch.size(), "a refused copy writes nothing");
            }
        }
    }

    /** writeStored copies exactly the stored bytes (checked against the mapped tensor), at the channel's position. */
    @Test
    void writeStoredCopiesTheMappedBytes() throws Exception {
        Path dir = tmp.resolve("m");
        RandomModels.write(dir, RandomModels.llama().withDtype(DataType.BFLOAT16).withShards(3));
        try (Checkpoint c = Checkpoint.open(dir)) {
            for (String name : new String[] {WeightNames.EMBED, WeightNames.mlp(1, "down_proj", "weight"), WeightNames.FINAL_NORM}) {
                Path out = tmp.resolve(name);
                try (FileChannel ch = FileChannel.open(out, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
                    ch.write(ByteBuffer.wrap(new byte[] {1, 2, 3}));
                    assertEquals(true, c.writeStored(name, ch));
                    assertEquals(3 + c.info(name).byteLength(), ch.position(), "the channel's position advances");
                }
                byte[] got = Files.readAllBytes(out);
                ByteBuffer mapped = c.raw(name);
                byte[] want = new byte[mapped.remaining()];
                mapped.get(want);
                byte[] tail = new byte[got.length - 3];
                System.arraycopy(got, 3, tail, 0, tail.length);
                assertArrayEquals(want, tail, name);
            }
        }
    }
}
