package dev.lopper.pruning.surgery;

import dev.lopper.model.io.DirectBuffers;
import dev.lopper.model.io.SafeTensorsWriter;
import dev.lopper.model.io.StoredBytes;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;

/**
 * Writes the kept slices of a stored tensor straight from its file bytes, without converting it: selecting rows
 * or columns moves whole elements, so the result is bit-identical to loading, index-selecting and storing back
 * in the same dtype (BF16 -> fp32 -> BF16 is exact for every non-NaN value). Holds at most one slab (a row of a
 * column cut) in memory; runs of whole rows are copied by the kernel.
 */
final class StoredSlice {
    /** Slabs with contiguous kept runs at least this long are copied run by run; shorter ones are gathered. */
    private static final long MIN_RUN_BYTES = 4096;

    private StoredSlice() {
    }

    /**
     * @param dims the stored tensor's shape
     * @param axis the cut axis
     * @param kept kept indices along {@code axis}, ascending
     */
    static void write(StoredBytes s, long[] dims, int axis, long[] kept, int elemBytes, FileChannel out) throws IOException {
        write(s, dims, axis, kept, elemBytes, out, MIN_RUN_BYTES);
    }

    /** {@code minRunBytes}: slabs of at least this many bytes per unit are copied run by run (tests use both ways). */
    static void write(StoredBytes s, long[] dims, int axis, long[] kept, int elemBytes, FileChannel out, long minRunBytes) throws IOException {
        long outer = 1;
        for (int i = 0; i < axis; i++) {
            outer *= dims[i];
        }
        long inner = elemBytes;
        for (int i = axis + 1; i < dims.length; i++) {
            inner *= dims[i];
        }
        long slab = dims[axis] * inner;
        if (inner >= minRunBytes) {
            for (long o = 0; o < outer; o++) {
                for (int i = 0; i < kept.length; ) {
                    int j = i + 1;
                    while (j < kept.length && kept[j] == kept[j - 1] + 1) {
                        j++;
                    }
                    s.transferTo(o * slab + kept[i] * inner, (j - i) * inner, out);
                    i = j;
                }
            }
            return;
        }
        ByteBuffer in = ByteBuffer.allocateDirect(Math.toIntExact(slab)).order(ByteOrder.LITTLE_ENDIAN);
        ByteBuffer buf = ByteBuffer.allocateDirect(Math.toIntExact(kept.length * inner)).order(ByteOrder.LITTLE_ENDIAN);
        try {
            int w = (int) inner;
            for (long o = 0; o < outer; o++) {
                in.clear();
                s.read(o * slab, in);
                buf.clear();
                for (long k : kept) {
                    int at = (int) (k * inner);
                    if (w == 2) {
                        buf.putShort(in.getShort(at));
                    } else if (w == 4) {
                        buf.putInt(in.getInt(at));
                    } else {
                        for (int b = 0; b < w; b++) {
                            buf.put(in.get(at + b));
                        }
                    }
                }
                buf.flip();
                SafeTensorsWriter.writeFully(out, buf);
            }
        } finally {
            DirectBuffers.free(in);
            DirectBuffers.free(buf);
        }
    }
}
