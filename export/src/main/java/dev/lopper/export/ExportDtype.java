package dev.lopper.export;

import java.util.Arrays;
import java.util.Locale;
import java.util.stream.Collectors;

/**
 * How {@code lopper export --dtype} stores weight matrices: {@code f32} (default), {@code f16}, {@code bf16}, and for
 * GGUF also {@code q8_0}. Norm weights and biases stay fp32 in every format.
 */
public enum ExportDtype {
    F32, F16, BF16, Q8_0;

    public String cliName() {
        return name().toLowerCase(Locale.ROOT);
    }

    public static ExportDtype parse(String name) {
        for (ExportDtype d : values()) {
            if (d.cliName().equalsIgnoreCase(name)) {
                return d;
            }
        }
        throw new IllegalArgumentException("--dtype: '" + name + "' is not a dtype; expected one of "
                + Arrays.stream(values()).map(ExportDtype::cliName).collect(Collectors.joining(", ")));
    }

    @Override
    public String toString() {
        return cliName();
    }
}
