package dev.lopper.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.Shape;

/**
 * Past keys and values of every layer ([B, kvHeads, T, headDim], after RoPE, before the GQA repeat), so that
 * decoding one more token costs one token's forward pass instead of the whole context's.
 * {@code try (KvCache cache = model.newCache()) { model.logits(prompt, cache); model.logits(next, cache); ... }}
 *
 * <p>Each layer's keys and values live in a buffer with room for more tokens (doubled when full): a step writes
 * its new keys/values into the buffer in place and reads a view of the filled part, so a step costs O(new
 * tokens) copying instead of re-concatenating and copying the whole past (O(T) per step, O(T^2) per sequence).
 */
public final class KvCache implements AutoCloseable {
    /** Initial room in tokens; doubled whenever a step needs more. */
    static final int INITIAL_CAPACITY = 64;
    private final NDManager manager;
    private final NDArray[] keys;
    private final NDArray[] values;
    private int length;

    KvCache(NDManager parent, int layers) {
        this.manager = parent.newSubManager();
        this.keys = new NDArray[layers];
        this.values = new NDArray[layers];
    }

    /** Tokens already in the cache: the position of the next token. */
    public int length() {
        return length;
    }

    void advance(int tokens) {
        length += tokens;
    }

    /**
     * Writes layer {@code i}'s new keys and values after the cached ones and returns all of them (past + new) as
     * views owned by {@code scope} (closing them leaves the cache intact; the step's arithmetic on them lands in
     * {@code scope}, never in the cache's manager).
     */
    NDArray[] append(int i, NDArray k, NDArray v, NDManager scope) {
        int end = length + (int) k.getShape().get(2);
        keys[i] = write(keys[i], k, end);
        values[i] = write(values[i], v, end);
        NDIndex filled = upTo(end);
        return new NDArray[] {keys[i].get(scope, filled), values[i].get(scope, filled)};
    }

    private NDArray write(NDArray buffer, NDArray fresh, int end) {
        long capacity = buffer == null ? 0 : buffer.getShape().get(2);
        if (end > capacity) {
            Shape s = fresh.getShape();
            long room = Math.max(end, Math.max(INITIAL_CAPACITY, 2 * capacity));
            NDArray grown = manager.zeros(new Shape(s.get(0), s.get(1), room, s.get(3)), fresh.getDataType(), fresh.getDevice());
            if (buffer != null) {
                try (NDArray past = buffer.get(upTo(length))) {
                    grown.set(upTo(length), past);
                }
                buffer.close();
            }
            buffer = grown;
        }
        buffer.set(new NDIndex().addAllDim().addAllDim().addSliceDim(length, end), fresh);
        return buffer;
    }

    /** [:, :, :end] (built, not parsed from a string: this runs twice per layer and step). */
    private static NDIndex upTo(long end) {
        return new NDIndex().addAllDim().addAllDim().addSliceDim(0, end);
    }

    @Override
    public void close() {
        manager.close();
    }
}
