package dev.lopper.training.job;

import ai.djl.ndarray.types.DataType;
import dev.lopper.model.ModelDir;
import dev.lopper.model.util.Progress;

import java.util.Locale;

/**
 * The dtype a training job writes its final model in: the one asked ({@code --output-dtype}), else the input
 * model's (a BF16 model stays BF16: training runs in fp32, and the final weights are rounded once when written).
 *
 * <pre>{@code
 * DataType t = OutputDtype.resolve(r.outputType(), originalDir, progress);   // prints "model written as bf16 (...)"
 * }</pre>
 */
public final class OutputDtype {
    private OutputDtype() {
    }

    /** {@code asked}, else the stored dtype of the input's floating tensors (the first one found); says which on {@code progress}. */
    public static DataType resolve(DataType asked, ModelDir input, Progress progress) {
        DataType t = asked != null ? asked : of(input);
        progress.message("model written as " + name(t) + (asked != null ? " (--output-dtype)"
                : " (the input's dtype; --output-dtype f32|bf16|f16 to change)"));
        return t;
    }

    /** The input model's dtype: its first floating tensor's stored dtype (F32 when none is found). */
    public static DataType of(ModelDir input) {
        for (String n : new java.util.TreeSet<>(input.checkpoint().names())) {
            DataType t = input.checkpoint().storedType(n);
            if (t == DataType.BFLOAT16 || t == DataType.FLOAT16 || t == DataType.FLOAT32) {
                return t;
            }
        }
        return DataType.FLOAT32;
    }

    /** f32, bf16 or f16. */
    public static String name(DataType t) {
        return switch (t) {
            case BFLOAT16 -> "bf16";
            case FLOAT16 -> "f16";
            case FLOAT32 -> "f32";
            default -> t.name().toLowerCase(Locale.ROOT);
        };
    }

    /** The CLI spelling (f32, bf16, f16, or keep: null, the input's). */
    public static DataType parse(String s, String option) {
        if (s == null) {
            return null;
        }
        return switch (s.toLowerCase(Locale.ROOT)) {
            case "f32", "float32" -> DataType.FLOAT32;
            case "bf16", "bfloat16" -> DataType.BFLOAT16;
            case "f16", "float16" -> DataType.FLOAT16;
            case "keep" -> null;
            default -> throw new IllegalArgumentException(option + " " + s + ": expected f32, bf16, f16 or keep (the input's)");
        };
    }
}
