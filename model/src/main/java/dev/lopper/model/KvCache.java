package dev.lopper.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;

/**
 * Past keys and values of every layer ([B, kvHeads, T, headDim], after RoPE, before the GQA repeat), so that
 * decoding one more token costs one token's forward pass instead of the whole context's.
 * {@code try (KvCache cache = model.newCache()) { model.logits(prompt, cache); model.logits(next, cache); ... }}
 */
public final class KvCache implements AutoCloseable {
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
     * Appends layer {@code i}'s new keys and values and returns all of them (past + new) as copies owned by
     * {@code scope}, so that the step's arithmetic never allocates in the cache's manager.
     */
    NDArray[] append(int i, NDArray k, NDArray v, NDManager scope) {
        keys[i] = extend(keys[i], k);
        values[i] = extend(values[i], v);
        NDArray kAll = keys[i].duplicate();
        NDArray vAll = values[i].duplicate();
        kAll.attach(scope);
        vAll.attach(scope);
        return new NDArray[] {kAll, vAll};
    }

    private NDArray extend(NDArray past, NDArray fresh) {
        NDArray all;
        if (past == null) {
            all = fresh.duplicate();
        } else {
            all = past.concat(fresh, 2); // in the cache's manager: past is the first operand
            past.close();
        }
        all.attach(manager);
        return all;
    }

    @Override
    public void close() {
        manager.close();
    }
}
