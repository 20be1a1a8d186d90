package dev.lopper.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;

import java.util.Arrays;

/** Greedy decoding: the argmax token each step, until max tokens or the EOS token. */
public final class Generation {
    private Generation() {
    }

    /**
     * Returns prompt ids followed by up to {@code maxTokens} generated ids. Decodes with a KV cache; past
     * max_position_embeddings it falls back to re-running the last max_position_embeddings tokens each step.
     */
    public static long[] greedy(LlamaModel model, long[] prompt, int maxTokens) {
        if (prompt.length + maxTokens > model.config().maxPositionEmbeddings()) {
            return greedyWindowed(model, prompt, maxTokens);
        }
        long[] ids = Arrays.copyOf(prompt, prompt.length + maxTokens);
        int len = prompt.length;
        Integer eos = model.config().eosTokenId();
        try (NDManager m = NDManager.newBaseManager(model.device()); KvCache cache = model.newCache()) {
            long[] input = prompt;
            for (int step = 0; step < maxTokens; step++) {
                long next;
                try (NDManager scope = m.newSubManager()) {
                    NDArray logits = model.logits(scope.create(input, new Shape(1, input.length)), cache);
                    next = logits.get(0, input.length - 1).argMax().getLong();
                }
                ids[len++] = next;
                if (eos != null && next == eos) {
                    break;
                }
                input = new long[] {next};
            }
        }
        return Arrays.copyOf(ids, len);
    }

    /** Greedy decoding without a cache, each step over the last max_position_embeddings tokens. */
    static long[] greedyWindowed(LlamaModel model, long[] prompt, int maxTokens) {
        long[] ids = Arrays.copyOf(prompt, prompt.length + maxTokens);
        int len = prompt.length;
        Integer eos = model.config().eosTokenId();
        int window = model.config().maxPositionEmbeddings();
        for (int step = 0; step < maxTokens; step++) {
            int from = Math.max(0, len - window);
            float[][] logits = model.logits(Arrays.copyOfRange(ids, from, len));
            long next = argmax(logits[logits.length - 1]);
            ids[len++] = next;
            if (eos != null && next == eos) {
                break;
            }
        }
        return Arrays.copyOf(ids, len);
    }

    static int argmax(float[] v) {
        int best = 0;
        for (int i = 1; i < v.length; i++) {
            if (v[i] > v[best]) {
                best = i;
            }
        }
        return best;
    }
}
