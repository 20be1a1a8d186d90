package dev.lopper.model.io;

import java.lang.reflect.Field;
import java.lang.reflect.Method;
import java.nio.ByteBuffer;

/**
 * Frees a direct buffer now instead of at some later GC. Converting a layer's BF16 weights allocates direct
 * buffers as large as the layer in fp32; with a large heap, GC (and with it their release) can be rare, so they
 * would pile up off-heap to {@code -XX:MaxDirectMemorySize} (the heap size by default). Uses
 * {@code sun.misc.Unsafe.invokeCleaner} (module jdk.unsupported); where that is unavailable the buffer is left to
 * the GC as before.
 */
public final class DirectBuffers {
    private static final Object UNSAFE;
    private static final Method INVOKE_CLEANER;

    static {
        Object unsafe = null;
        Method m = null;
        try {
            Class<?> c = Class.forName("sun.misc.Unsafe");
            Field f = c.getDeclaredField("theUnsafe");
            f.setAccessible(true);
            unsafe = f.get(null);
            m = c.getMethod("invokeCleaner", ByteBuffer.class);
        } catch (ReflectiveOperationException | RuntimeException e) {
            unsafe = null;
            m = null;
        }
        UNSAFE = unsafe;
        INVOKE_CLEANER = m;
    }

    private DirectBuffers() {
    }

    /** Releases {@code buffer}'s memory; it must be a direct buffer that nothing else references any more. */
    public static void free(ByteBuffer buffer) {
        if (INVOKE_CLEANER == null || buffer == null || !buffer.isDirect()) {
            return;
        }
        try {
            INVOKE_CLEANER.invoke(UNSAFE, buffer);
        } catch (ReflectiveOperationException | RuntimeException e) {
            // a slice or duplicate cannot be cleaned: the GC will free it
        }
    }
}
