package dev.lopper.model;

import java.util.Arrays;

/** Greedy decoding: the argmax token each step, until max tokens or the EOS token. */
public final class Generation {
    private Generation() {
    }

    /** Returns prompt ids followed by up to {@code maxTokens} generated ids. */
    public static long[] greedy(LlamaModel model, long[] prompt, int maxTokens) {
        long[] ids = Arrays.copyOf(prompt, prompt.length + maxTokens);
        int len = prompt.length;
        Integer eos = model.config().eosTokenId();
        int window = model.config().maxPositionEmbeddings();
        for (int step = 0; step < maxTokens; step++) {
            // No KV cache yet: each step reruns the (at most max_position_embeddings long) context.
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
