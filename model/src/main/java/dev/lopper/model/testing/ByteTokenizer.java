package dev.lopper.model.testing;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;

/**
 * A real HF {@code tokenizer.json}: byte-level BPE with no merges (one token per byte), ids 0-2 special.
 * What the generated random models ship, so that every code path that loads a tokenizer runs on them.
 */
final class ByteTokenizer {
    private ByteTokenizer() {
    }

    static String json(int vocabSize) {
        if (vocabSize < 259) {
            throw new IllegalArgumentException("a byte tokenizer needs vocab >= 259, got " + vocabSize);
        }
        ObjectMapper om = new ObjectMapper();
        ObjectNode root = om.createObjectNode();
        root.put("version", "1.0");
        root.putNull("truncation");
        root.putNull("padding");
        ArrayNode added = root.putArray("added_tokens");
        String[] specials = {"<unk>", "<s>", "</s>"};
        for (int i = 0; i < specials.length; i++) {
            added.addObject().put("id", i).put("content", specials[i]).put("single_word", false).put("lstrip", false)
                    .put("rstrip", false).put("normalized", false).put("special", true);
        }
        root.putNull("normalizer");
        root.putObject("pre_tokenizer").put("type", "ByteLevel").put("add_prefix_space", false).put("trim_offsets", true).put("use_regex", true);
        ObjectNode post = root.putObject("post_processor");
        post.put("type", "TemplateProcessing");
        post.putArray("single").add(om.createObjectNode().set("SpecialToken", om.createObjectNode().put("id", "<s>").put("type_id", 0)))
                .add(om.createObjectNode().set("Sequence", om.createObjectNode().put("id", "A").put("type_id", 0)));
        post.putArray("pair").add(om.createObjectNode().set("Sequence", om.createObjectNode().put("id", "A").put("type_id", 0)))
                .add(om.createObjectNode().set("Sequence", om.createObjectNode().put("id", "B").put("type_id", 1)));
        ObjectNode st = post.putObject("special_tokens").putObject("<s>");
        st.put("id", "<s>");
        st.putArray("ids").add(1);
        st.putArray("tokens").add("<s>");
        root.putObject("decoder").put("type", "ByteLevel").put("add_prefix_space", true).put("trim_offsets", true).put("use_regex", true);
        ObjectNode model = root.putObject("model");
        model.put("type", "BPE");
        model.putNull("dropout");
        model.putNull("unk_token");
        model.putNull("continuing_subword_prefix");
        model.putNull("end_of_word_suffix");
        model.put("fuse_unk", false);
        model.put("byte_fallback", false);
        ObjectNode vocab = model.putObject("vocab");
        for (int i = 0; i < specials.length; i++) {
            vocab.put(specials[i], i);
        }
        String[] chars = byteChars();
        for (int b = 0; b < 256; b++) {
            vocab.put(chars[b], 3 + b);
        }
        model.putArray("merges");
        return root.toPrettyString();
    }

    /** GPT-2's byte-to-unicode table: printable bytes map to themselves, the rest to code points from 256 up. */
    private static String[] byteChars() {
        String[] out = new String[256];
        int n = 0;
        for (int b = 0; b < 256; b++) {
            boolean printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            out[b] = String.valueOf((char) (printable ? b : 256 + n++));
        }
        return out;
    }
}
