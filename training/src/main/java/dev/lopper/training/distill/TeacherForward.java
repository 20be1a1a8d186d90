package dev.lopper.training.distill;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import dev.lopper.model.Decoder;
import dev.lopper.model.LayerHooks;
import dev.lopper.model.LayerWeights;
import dev.lopper.model.Masks;
import dev.lopper.model.ModelDir;
import dev.lopper.model.Rope;
import dev.lopper.model.WeightNames;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.io.TensorSource;
import dev.lopper.pruning.plan.ModelHash;
import dev.lopper.training.loop.F32Tensors;

import java.nio.file.Path;

/**
 * The teacher's forward pass, layer-streamed and without gradients: embeddings (only the batch's rows), then each
 * decoder layer loaded from the memory-mapped checkpoint, run and released, then the final norm and the head. It
 * holds one layer's weights and one [B, T, hidden] hidden state besides the logits, never the whole teacher, so the
 * teacher does not sit in memory beside the student's optimizer state. The math is {@link Decoder#layer}'s, as the
 * student's.
 *
 * <p>{@link #checkUnchanged} compares the directory's {@link ModelHash} (milliseconds) with the one the job started
 * with: a teacher that changes under a job stops it.
 *
 * <pre>{@code
 * try (TeacherForward t = TeacherForward.open(Path.of("fixtures/lopper-tiny"), hash)) {
 *     NDArray logits = t.run(scope, ids, new int[0], true).logits();     // [B, T, vocab], fp32, owned by scope
 * }
 * }</pre>
 */
public final class TeacherForward implements AutoCloseable {
    private final ModelDir dir;
    private final String hash;

    private TeacherForward(ModelDir dir, String hash) {
        this.dir = dir;
        this.hash = hash;
    }

    /** @param hash the teacher's {@link ModelHash} when the job started ({@link Distillation#check}) */
    public static TeacherForward open(Path teacher, String hash) {
        return new TeacherForward(ModelDir.open(teacher), hash);
    }

    public ModelConfig config() {
        return dir.config();
    }

    public Path path() {
        return dir.path();
    }

    /** Throws a one-line {@link IllegalStateException} when the teacher's directory no longer has the job's hash. */
    public void checkUnchanged() {
        String now = ModelHash.of(dir.path());
        if (!now.equals(hash)) {
            throw new IllegalStateException("--teacher " + dir.path() + ": changed while the job ran (model hash " + now
                    + ", the job started with " + hash + "); restore it, or pass --overwrite to start over with the new teacher");
        }
    }

    /** What one teacher pass gave: logits (null when not asked) and the outputs of the asked layers. */
    public record Output(NDArray logits, java.util.List<NDArray> hidden) {
    }

    /**
     * One pass: the outputs of layers {@code keep} (ascending; [B, T, hidden]) and, when {@code logits}, the logits;
     * without logits it stops after the last kept layer.
     */
    public Output run(NDManager scope, NDArray ids, int[] keep, boolean logits) {
        ModelConfig c = dir.config();
        java.util.List<NDArray> hidden = new java.util.ArrayList<>();
        int last = logits ? c.numLayers() : (keep.length == 0 ? 0 : keep[keep.length - 1] + 1);
        boolean hKept = false;
        TensorSource source = dir.checkpoint();
        long b = ids.getShape().get(0);
        int t = (int) ids.getShape().get(1);
        // only the batch's rows of the embedding are read (a 128k-token table is 1 GiB in fp32)
        NDArray h = source.loadRows(WeightNames.EMBED, ids.toLongArray(), scope, ai.djl.ndarray.types.DataType.FLOAT32)
                .reshape(b, t, c.hiddenSize());
        for (int i = 0; i < last; i++) {
            try (NDManager layer = scope.newSubManager()) {
                LayerWeights w = LayerWeights.load(source, c, i, layer);
                NDList rope = new Rope(c).tables(layer, 0, t);
                NDArray mask = Masks.causal(layer, t, c.slidingWindow(), null);
                NDArray in = F32Tensors.alias(h, layer);
                NDArray out = F32Tensors.keep(Decoder.layer(w, in, rope.get(0), rope.get(1), mask, c.rmsNormEps(), c.headDim(),
                        LayerHooks.NONE), scope);
                if (!hKept) {
                    h.close();
                }
                h = out;
                hKept = java.util.Arrays.binarySearch(keep, i) >= 0; // keep is ascending
                if (hKept) {
                    hidden.add(out); // owned by scope, returned
                }
            }
        }
        NDArray out = null;
        if (logits) {
            try (NDManager head = scope.newSubManager()) {
                NDArray norm = source.load(WeightNames.FINAL_NORM, head);
                NDArray lmHead = source.load(WeightNames.head(c, source), head);
                NDArray in = F32Tensors.alias(h, head);
                out = F32Tensors.keep(Decoder.linear(Decoder.rmsNorm(in, norm, c.rmsNormEps()), lmHead, null), scope);
            }
        }
        if (!hKept) {
            h.close();
        }
        return new Output(out, hidden);
    }

    @Override
    public void close() {
        dir.close();
    }
}
