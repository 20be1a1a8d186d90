package dev.lopper.export;

import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;

/**
 * A minimal pickle (protocol 2) writer for TorchScript's {@code data.pkl}: the opcodes torch.jit.save itself emits
 * for a module object whose attributes are tensors, ints, bools and None (see Python's pickletools for the
 * opcode table). Tensors are {@code torch._utils._rebuild_tensor_v2} calls on storages given as persistent ids
 * ({@code ('storage', torch.FloatStorage, key, 'cpu', numel)}), whose bytes live in the archive's {@code data/key}.
 */
final class Pickle {
    private final ByteArrayOutputStream out = new ByteArrayOutputStream();
    private int memo;

    Pickle() {
        out.write(0x80); // PROTO
        out.write(2);
    }

    byte[] bytes() {
        return out.toByteArray();
    }

    Pickle global(String module, String name) {
        out.write('c');
        ascii(module + "\n" + name + "\n");
        return this;
    }

    Pickle mark() {
        out.write('(');
        return this;
    }

    Pickle tuple() {
        out.write('t');
        return this;
    }

    Pickle emptyTuple() {
        out.write(')');
        return this;
    }

    Pickle emptyDict() {
        out.write('}');
        return this;
    }

    Pickle setItems() {
        out.write('u');
        return this;
    }

    Pickle newObj() {
        out.write(0x81);
        return this;
    }

    Pickle build() {
        out.write('b');
        return this;
    }

    Pickle reduce() {
        out.write('R');
        return this;
    }

    Pickle binPersId() {
        out.write('Q');
        return this;
    }

    Pickle stop() {
        out.write('.');
        return this;
    }

    Pickle bool(boolean v) {
        out.write(v ? 0x88 : 0x89);
        return this;
    }

    Pickle none() {
        out.write('N');
        return this;
    }

    Pickle integer(long v) {
        if (v >= 0 && v < 256) {
            out.write('K'); // BININT1
            out.write((int) v);
        } else if (v >= 0 && v < 65536) {
            out.write('M'); // BININT2
            out.write((int) (v & 0xff));
            out.write((int) (v >> 8));
        } else if (v >= Integer.MIN_VALUE && v <= Integer.MAX_VALUE) {
            out.write('J'); // BININT, 4 bytes little-endian signed
            le32((int) v);
        } else {
            out.write(0x8a); // LONG1: n bytes of little-endian two's complement
            out.write(8);
            for (int i = 0; i < 8; i++) {
                out.write((int) (v >> (8 * i)) & 0xff);
            }
        }
        return this;
    }

    Pickle string(String s) {
        byte[] b = s.getBytes(StandardCharsets.UTF_8);
        out.write('X'); // BINUNICODE
        le32(b.length);
        out.write(b, 0, b.length);
        return this;
    }

    /** Stores the top of the stack in the memo; returns its index for {@link #get}. */
    int put() {
        out.write('r'); // LONG_BINPUT
        le32(memo);
        return memo++;
    }

    Pickle get(int index) {
        out.write('j'); // LONG_BINGET
        le32(index);
        return this;
    }

    /** A tuple of ints. */
    Pickle ints(long... values) {
        mark();
        for (long v : values) {
            integer(v);
        }
        return tuple();
    }

    private void le32(int v) {
        for (int i = 0; i < 4; i++) {
            out.write((v >> (8 * i)) & 0xff);
        }
    }

    private void ascii(String s) {
        byte[] b = s.getBytes(StandardCharsets.US_ASCII);
        out.write(b, 0, b.length);
    }
}
