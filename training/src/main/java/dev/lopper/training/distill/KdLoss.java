package dev.lopper.training.distill;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import dev.lopper.model.Scalars;
import dev.lopper.training.loop.CausalLm;
import dev.lopper.training.loop.LossTerm;
import dev.lopper.training.loop.MicroBatch;

/**
 * The distillation loss as a {@link LossTerm}: {@code alpha * T^2 * KL(p_T || q_T) + (1 - alpha) * CE}, p_T the
 * teacher's and q_T the student's softmax of logits / T, the KL averaged over every token of the micro-batch (all
 * B x T positions, as Model Optimizer's {@code LogitsDistillationLoss} with {@code reduction="batchmean"} over the
 * flattened tokens), CE HF's causal-LM loss ({@link CausalLm#loss}; skipped when alpha is 1). The teacher comes
 * either layer-streamed per micro-batch ({@link TeacherForward}: the full-vocabulary KL, {@link #klFull}) or from a
 * {@link TeacherCache} (top-k log-probabilities and the tail's log-mass: {@link #klTopK}, within the bound
 * docs/TRAINING.md states). Validation stays the causal-LM loss (the trainees' {@code evaluate}), so KD and CE
 * runs are compared on the same number.
 *
 * <pre>{@code
 * LossTerm kd = new KdLoss(settings, TeacherForward.open(teacher, hash), null, new int[0], new int[0]);   // logits only
 * LossPass pass = LossPass.inMemory(student, kd);
 * }</pre>
 */
public final class KdLoss implements LossTerm {
    private final Distillation settings;
    private final TeacherForward forward;
    private final TeacherCache cache;
    private final int[] studentLayers;
    private final int[] teacherLayers;

    /**
     * @param forward the streamed teacher (also checked for changes at the first micro-batch of every step), or null
     *                when {@code cache} is given and the teacher directory is not read during training
     * @param cache the teacher cache, or null to run {@code forward} on every micro-batch
     * @param studentLayers with {@code settings.hiddenLoss()}: the student layers compared ({@link Distillation#studentLayers})
     * @param teacherLayers the teacher layer of each ({@link Distillation#teacherLayers}); the hidden states come from
     *                      {@code forward}, also when the logits come from the cache
     */
    public KdLoss(Distillation settings, TeacherForward forward, TeacherCache cache, int[] studentLayers, int[] teacherLayers) {
        if (forward == null && (cache == null || studentLayers.length > 0)) {
            throw new IllegalArgumentException("distillation needs the teacher or its cache");
        }
        if (studentLayers.length != teacherLayers.length) {
            throw new IllegalArgumentException("one teacher layer per student layer expected");
        }
        this.settings = settings;
        this.studentLayers = settings.hiddenLoss() == null ? new int[0] : studentLayers.clone();
        this.teacherLayers = settings.hiddenLoss() == null ? new int[0] : teacherLayers.clone();
        this.forward = forward;
        this.cache = cache;
    }

    @Override
    public int[] hiddenLayers() {
        return studentLayers.clone();
    }

    /** The teacher's pass of the micro-batch {@link #prepare} ran (null: none yet). */
    private MicroBatch preparedFor;
    private TeacherForward.Output prepared;

    /** Runs the teacher for the micro-batch before the student's pass (its arrays live in the batch's scope). */
    @Override
    public void prepare(MicroBatch b) {
        preparedFor = null; // until the teacher's pass has succeeded
        prepared = teacher(b.scope(), b);
        preparedFor = b;
    }

    /** What the teacher must give for {@code b}: logits (no cache) and the compared layers' outputs; null if nothing. */
    private TeacherForward.Output teacher(NDManager m, MicroBatch b) {
        if (b.micro() == 0 && forward != null) {
            forward.checkUnchanged();
        }
        boolean teacherLogits = settings.alpha() > 0 && cache == null;
        return teacherLogits || studentLayers.length > 0 ? forward.run(m, b.ids(), teacherLayers, teacherLogits) : null;
    }

    @Override
    public NDArray loss(NDArray logits, MicroBatch b) {
        return loss(logits, java.util.List.of(), b);
    }

    @Override
    public NDArray loss(NDArray logits, java.util.List<NDArray> hidden, MicroBatch b) {
        NDManager m = logits.getManager();
        if (hidden.size() != studentLayers.length) {
            throw new IllegalStateException("the trainee gave " + hidden.size() + " hidden states, the loss asked for " + studentLayers.length);
        }
        // one teacher pass gives what the cache does not: the logits (no cache) and the compared layers' outputs;
        // trainees run it in prepare, before the student's forward
        TeacherForward.Output teacher = preparedFor == b ? prepared : teacher(m, b);
        preparedFor = null;
        prepared = null;
        double alpha = settings.alpha();
        double temperature = settings.temperature();
        NDArray loss;
        if (alpha == 0) {
            loss = CausalLm.loss(logits, b.ids());
        } else {
            NDArray kl;
            if (cache != null) {
                TeacherCache.TopK t = cache.read(m, b.first(), (int) b.ids().getShape().get(0));
                kl = klTopK(logits, t.indices(), t.logProbs(), t.tailLogMass(), temperature);
            } else {
                kl = klFull(logits, teacher.logits(), temperature);
            }
            loss = kl.mul(Scalars.of(m, alpha * temperature * temperature));
            if (alpha < 1) {
                loss = loss.add(CausalLm.loss(logits, b.ids()).mul(Scalars.of(m, 1 - alpha)));
            }
        }
        if (studentLayers.length > 0) {
            loss = loss.add(hiddenLoss(hidden, teacher.hidden(), settings.hiddenLoss()).mul(Scalars.of(m, settings.hiddenWeight())));
        }
        return loss;
    }

    /**
     * The hidden-state loss, averaged over the compared layers: {@code cosine}, the mean over tokens of
     * {@code 1 - <s, t> / (|s| |t|)} (|.| floored at 1e-8, as torch's {@code cosine_similarity}); {@code mse}, the
     * mean over tokens and channels of {@code (s - t)^2} (torch's {@code mse_loss}).
     */
    public static NDArray hiddenLoss(java.util.List<NDArray> student, java.util.List<NDArray> teacher, String kind) {
        NDManager m = student.get(0).getManager();
        NDArray sum = null;
        for (int j = 0; j < student.size(); j++) {
            NDArray s = student.get(j);
            NDArray t = teacher.get(j).stopGradient();
            NDArray l;
            if (kind.equals("cosine")) {
                NDArray dot = s.mul(t).sum(new int[] {-1});
                NDArray ns = s.square().sum(new int[] {-1}).sqrt().maximum(Scalars.of(m, 1e-8));
                NDArray nt = t.square().sum(new int[] {-1}).sqrt().maximum(Scalars.of(m, 1e-8));
                l = Scalars.of(m, 1).sub(dot.div(ns.mul(nt))).mean();
            } else {
                l = s.sub(t).square().mean();
            }
            sum = sum == null ? l : sum.add(l);
        }
        return sum.mul(Scalars.of(m, 1.0 / student.size()));
    }

    /**
     * {@code mean over tokens of sum_v p_v (log p_v - log q_v)}, p = softmax(teacher / T), q = softmax(student / T);
     * a scalar with gradients back to {@code student} [B, T, V].
     */
    public static NDArray klFull(NDArray student, NDArray teacher, double temperature) {
        NDManager m = student.getManager();
        NDArray logq = student.mul(Scalars.of(m, 1 / temperature)).logSoftmax(-1);
        NDArray logp = teacher.stopGradient().mul(Scalars.of(m, 1 / temperature)).logSoftmax(-1);
        return logp.exp().mul(logp.sub(logq)).sum(new int[] {-1}).mean();
    }

    /**
     * The KL of the teacher's top-k distribution with its tail collapsed into one outcome:
     * {@code mean over tokens of sum_{v in top-k} p_v (log p_v - log q_v) + p_tail (log p_tail - log q_tail)}, with
     * {@code q_tail} the student's mass outside the teacher's top-k (a log-sum-exp over the other tokens, no
     * cancellation). By the log-sum inequality it is at most the full KL; the gap is
     * {@code p_tail * KL(p | tail || q | tail)}.
     *
     * @param indices the teacher's top-k token ids [B, T, k] (int64)
     * @param logProbs their log-probabilities at temperature T [B, T, k]
     * @param tailLogMass log of the teacher's probability outside them [B, T]
     */
    public static NDArray klTopK(NDArray student, NDArray indices, NDArray logProbs, NDArray tailLogMass, double temperature) {
        NDManager m = student.getManager();
        NDArray logq = student.mul(Scalars.of(m, 1 / temperature)).logSoftmax(-1);
        NDArray logqK = logq.gather(indices, 2);
        NDArray logqTail = tailLogSumExp(logq, indices);
        NDArray head = logProbs.exp().mul(logProbs.sub(logqK)).sum(new int[] {-1});
        NDArray tail = tailLogMass.exp().mul(tailLogMass.sub(logqTail));
        return head.add(tail).mean();
    }

    /** {@code log sum_{v not in indices} exp(logp_v)} over the last axis [B, T] (the indices masked to -inf). */
    static NDArray tailLogSumExp(NDArray logp, NDArray indices) {
        NDManager m = logp.getManager();
        NDArray minusInf = m.full(indices.getShape(), Float.NEGATIVE_INFINITY, DataType.FLOAT32);
        NDArray masked = logp.scatter(indices, minusInf, 2);
        NDArray max = masked.max(new int[] {-1}, true).stopGradient();
        return masked.sub(max).exp().sum(new int[] {-1}).log().add(max.squeeze(-1));
    }

    /** The teacher's top-k at temperature T of logits [B, T, V]: ids [B, T, k] int64, log-probs [B, T, k], tail [B, T]. */
    static NDList topK(NDArray teacherLogits, int k, double temperature) {
        NDManager m = teacherLogits.getManager();
        NDArray logp = teacherLogits.mul(Scalars.of(m, 1 / temperature)).logSoftmax(-1);
        NDList top = logp.topK(k, -1, true, true);
        NDArray values = top.get(0);
        NDArray ids = top.get(1).toType(DataType.INT64, false);
        return new NDList(ids, values, tailLogSumExp(logp, ids));
    }
}
