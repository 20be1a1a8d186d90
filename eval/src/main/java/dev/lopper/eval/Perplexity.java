package dev.lopper.eval;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import dev.lopper.model.Finite;
import dev.lopper.model.LayerHooks;
import dev.lopper.model.LlamaModel;
import dev.lopper.model.ModelFormatException;
import dev.lopper.model.Tokenizer;
import dev.lopper.model.util.Progress;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Perplexity over non-overlapping windows, the protocol of the fixture's reference numbers:
 * ids = tokenizer.encode(text) (BOS included); windows [i*L, (i+1)*L); the last partial window is dropped; each
 * window scores tokens 1..L-1 given the ones before them in the window; perplexity = exp(mean NLL).
 */
public final class Perplexity {
    private Perplexity() {
    }

    /** Reads and tokenizes a UTF-8 text file, a .jsonl file or a directory of them (as {@link EvalText}); an empty or missing one is a clear error. */
    public static long[] tokenize(Tokenizer tokenizer, Path text) {
        if (!Files.exists(text)) {
            throw ModelFormatException.file(text, "not found; expected a UTF-8 text file, a .jsonl file or a directory of them");
        }
        String s;
        String name = text.getFileName() == null ? "" : text.getFileName().toString().toLowerCase(java.util.Locale.ROOT);
        if (Files.isDirectory(text) || name.endsWith(".jsonl")) {
            s = EvalText.read(text, "text", "\n\n"); // as lopper eval --text reads it
        } else {
            try {
                s = Files.readString(text, StandardCharsets.UTF_8);
            } catch (IOException e) {
                throw ModelFormatException.file(text, "cannot read as UTF-8 text: " + e.getMessage());
            }
        }
        if (s.isBlank()) {
            throw ModelFormatException.file(text, "is empty; expected text to evaluate");
        }
        return tokenizer.encode(s);
    }

    /**
     * @param ids the whole text's token ids
     * @param batchSize windows per forward pass
     */
    public static PerplexityResult evaluate(LlamaModel model, long[] ids, int seqLen, int batchSize, String modelName, String textName) {
        if (seqLen < 2) {
            throw new IllegalArgumentException("--seq-len " + seqLen + ": expected at least 2");
        }
        if (batchSize < 1) {
            throw new IllegalArgumentException("--batch " + batchSize + ": expected at least 1");
        }
        int windows = ids.length / seqLen;
        if (windows == 0) {
            throw new IllegalArgumentException(textName + ": " + ids.length + " tokens, expected at least one window of --seq-len " + seqLen);
        }
        double nll = 0;
        try (NDManager manager = NDManager.newBaseManager(model.device());
             Progress.Counter progress = Progress.start("perplexity", (long) windows * seqLen, "tok")) {
            for (int w0 = 0; w0 < windows; w0 += batchSize) {
                int b = Math.min(batchSize, windows - w0);
                long[] batch = new long[b * seqLen];
                System.arraycopy(ids, w0 * seqLen, batch, 0, b * seqLen);
                try (NDManager scope = manager.newSubManager()) {
                    NDArray input = scope.create(batch, new Shape(b, seqLen));
                    NDArray logits = model.logits(input); // [b, L, V]
                    NDArray logProbs = logits.get(new NDIndex(":, :-1, :")).logSoftmax(-1);
                    NDArray targets = input.get(new NDIndex(":, 1:")).expandDims(-1);
                    NDArray picked = logProbs.gather(targets, -1); // [b, L-1, 1]
                    double batchNll = -picked.toType(DataType.FLOAT64, false).sum().getDouble();
                    if (!Double.isFinite(batchNll)) {
                        locateNonFinite(model, input, w0); // costs nothing unless the loss already went bad
                    }
                    nll += batchNll;
                }
                progress.advance((long) b * seqLen);
            }
            long predicted = (long) windows * (seqLen - 1);
            double mean = nll / predicted;
            return new PerplexityResult(modelName, textName, seqLen, windows, predicted, ids.length, mean, Math.exp(mean),
                    progress.elapsedSeconds(), progress.rate(), dev.lopper.model.Devices.name(model.device()));
        }
    }

    /**
     * Re-runs a batch whose loss is NaN or Inf layer by layer and throws naming the first layer whose output holds
     * NaN or Inf (weights were checked on load, so this is an activation that overflowed fp32).
     */
    private static void locateNonFinite(LlamaModel model, NDArray ids, int firstWindow) {
        int t = (int) ids.getShape().get(1);
        try (NDManager scope = NDManager.newBaseManager(model.device())) {
            NDArray local = ids.toDevice(model.device(), true);
            local.attach(scope);
            NDArray x = model.embed(scope, local);
            NDList rope = model.ropeTables(scope, t);
            NDArray mask = model.mask(scope, t, null);
            for (int i = 0; i < model.config().numLayers(); i++) {
                x = model.layer(i, x, rope, mask, LayerHooks.NONE);
                Finite.checkLayerOutput(i, x, "perplexity window", firstWindow);
            }
            x = model.head(x);
            String p = Finite.problem(x);
            throw new ModelFormatException("the logits hold " + (p == null ? "values whose log-softmax is not finite" : p)
                    + " (perplexity windows " + firstWindow + ".." + (firstWindow + ids.getShape().get(0) - 1) + ")");
        }
    }
}
