package dev.lopper.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;

import java.util.Arrays;
import java.util.function.LongConsumer;

/** Greedy decoding: the argmax token each step, until max tokens or the EOS token. */
public final class Generation {
    private Generation() {
    }

    /**
     * Returns prompt ids followed by up to {@code maxTokens} generated ids. Decodes with a KV cache; once the text
     * reaches max_position_embeddings it goes on without one, each step over the last max_position_embeddings tokens
     * (much slower: {@link #exceedsContext} lets a caller warn first).
     */
    public static long[] greedy(LlamaModel model, long[] prompt, int maxTokens) {
        return greedy(model, prompt, maxTokens, id -> { });
    }

    /** As {@link #greedy(LlamaModel, long[], int)}, handing each new token to {@code onToken} as soon as it is chosen. */
    public static long[] greedy(LlamaModel model, long[] prompt, int maxTokens, LongConsumer onToken) {
        int window = model.config().maxPositionEmbeddings();
        long[] ids = Arrays.copyOf(prompt, prompt.length + maxTokens);
        int len = prompt.length;
        Integer eos = model.config().eosTokenId();
        int cachedSteps = Math.max(0, Math.min(maxTokens, window - prompt.length));
        boolean ended = false;
        if (cachedSteps > 0) {
            try (NDManager m = NDManager.newBaseManager(model.device()); KvCache cache = model.newCache()) {
                long[] input = prompt;
                for (int step = 0; step < cachedSteps && !ended; step++) {
                    long next;
                    try (NDManager scope = m.newSubManager()) {
                        NDArray logits = model.logits(scope.create(input, new Shape(1, input.length)), cache);
                        next = logits.get(0, input.length - 1).argMax().getLong();
                    }
                    ids[len++] = next;
                    onToken.accept(next);
                    ended = eos != null && next == eos;
                    input = new long[] {next};
                }
            }
        }
        // past the context length: no cache, each step over the last `window` tokens
        for (int step = len - prompt.length; step < maxTokens && !ended; step++) {
            int from = Math.max(0, len - window);
            float[][] logits = model.logits(Arrays.copyOfRange(ids, from, len));
            long next = argmax(logits[logits.length - 1]);
            ids[len++] = next;
            onToken.accept(next);
            ended = eos != null && next == eos;
        }
        return Arrays.copyOf(ids, len);
    }

    /** Whether generating {@code maxTokens} after {@code promptLength} tokens passes the model's context length. */
    public static boolean exceedsContext(LlamaModel model, int promptLength, int maxTokens) {
        return (long) promptLength + maxTokens > model.config().maxPositionEmbeddings();
    }

    /** Greedy decoding without a cache, each step over the last max_position_embeddings tokens (the reference path). */
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
