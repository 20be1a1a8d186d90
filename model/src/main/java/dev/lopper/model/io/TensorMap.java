package dev.lopper.model.io;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;

import java.io.IOException;
import java.nio.channels.WritableByteChannel;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.Map;
import java.util.Set;

/**
 * Tensors held in memory over a base source: what surgery produces (replaced or added tensors, removed ones
 * hidden) without copying the untouched weights of the base checkpoint.
 */
public final class TensorMap implements TensorSource {
    private final TensorSource base;
    private final Map<String, NDArray> overrides = new LinkedHashMap<>();
    private final Set<String> removed = new LinkedHashSet<>();

    /** @param base tensors not overridden come from here; may be null */
    public TensorMap(TensorSource base) {
        this.base = base;
    }

    /** Sets (replaces or adds) a tensor; the map keeps the array, which must outlive this map's use. */
    public TensorMap put(String name, NDArray value) {
        overrides.put(name, value);
        removed.remove(name);
        return this;
    }

    public TensorMap remove(String name) {
        overrides.remove(name);
        removed.add(name);
        return this;
    }

    @Override
    public Set<String> names() {
        Set<String> all = new LinkedHashSet<>();
        if (base != null) {
            all.addAll(base.names());
        }
        all.addAll(overrides.keySet());
        all.removeAll(removed);
        return Collections.unmodifiableSet(all);
    }

    @Override
    public boolean has(String name) {
        return overrides.containsKey(name) || (!removed.contains(name) && base != null && base.has(name));
    }

    @Override
    public Shape shape(String name) {
        NDArray a = overrides.get(name);
        return a != null ? a.getShape() : base().shape(name);
    }

    @Override
    public DataType storedType(String name) {
        NDArray a = overrides.get(name);
        if (a == null) {
            return base().storedType(name);
        }
        // a replaced tensor keeps the dtype its original was stored in, so a save stays BF16 when the input was
        return base != null && base.has(name) && !removed.contains(name) ? base.storedType(name) : a.getDataType();
    }

    @Override
    public NDArray load(String name, NDManager manager, DataType type) {
        NDArray a = overrides.get(name);
        if (a != null) {
            NDArray copy = a.getDataType() == type ? a.duplicate() : a.toType(type, false);
            copy.attach(manager);
            return copy;
        }
        if (removed.contains(name)) {
            throw new IllegalArgumentException("tensor '" + name + "' was removed");
        }
        return base().load(name, manager, type);
    }

    @Override
    public StoredBytes stored(String name) {
        return overrides.containsKey(name) || removed.contains(name) || base == null ? null : base.stored(name);
    }

    @Override
    public boolean writeStored(String name, WritableByteChannel out) throws IOException {
        // an override is an array in memory: the caller converts it
        return !overrides.containsKey(name) && !removed.contains(name) && base != null && base.writeStored(name, out);
    }

    @Override
    public NDArray loadRows(String name, long[] rows, NDManager manager, DataType type) {
        if (overrides.containsKey(name) || removed.contains(name) || base == null) {
            return TensorSource.super.loadRows(name, rows, manager, type);
        }
        return base.loadRows(name, rows, manager, type);
    }

    private TensorSource base() {
        if (base == null) {
            throw new IllegalArgumentException("no such tensor");
        }
        return base;
    }
}
