package dev.lopper.model.config;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lopper.model.ModelFormatException;
import org.junit.jupiter.api.Test;

import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class ModelConfigTest {
    private static final Path FILE = Path.of("m/config.json");

    private static ObjectNode json(String s) throws Exception {
        return (ObjectNode) new ObjectMapper().readTree(s.replace('\'', '"'));
    }

    /** Fields as in meta-llama/Llama-3.1-8B's config.json. */
    @Test
    void llama31WithRopeScaling() throws Exception {
        ModelConfig c = ModelConfig.parse(json("{'model_type':'llama','hidden_size':4096,'intermediate_size':14336,"
                + "'num_hidden_layers':32,'num_attention_heads':32,'num_key_value_heads':8,'vocab_size':128256,"
                + "'rms_norm_eps':1e-5,'rope_theta':500000.0,'max_position_embeddings':131072,'tie_word_embeddings':false,"
                + "'rope_scaling':{'factor':8.0,'low_freq_factor':1.0,'high_freq_factor':4.0,"
                + "'original_max_position_embeddings':8192,'rope_type':'llama3'},'bos_token_id':128000,'eos_token_id':[128001,128008]}"), FILE);
        assertEquals(128, c.headDim());
        assertEquals(32, c.numLayers());
        assertEquals(new LayerShape(32, 8, 14336), c.layer(5));
        assertEquals("llama3", c.ropeScaling().type());
        assertEquals(128001, c.eosTokenId());
        assertFalse(c.qkvBias());
        // llama3 scaling: the highest frequency is unchanged, the lowest divided by the factor
        double[] plain = RopeScaling.NONE.inverseFrequencies(128, 500000.0);
        double[] scaled = c.ropeScaling().inverseFrequencies(128, 500000.0);
        assertEquals(plain[0], scaled[0], 1e-15);
        assertEquals(plain[63] / 8.0, scaled[63], 1e-15);
    }

    @Test
    void qwen2HasQkvBiasesAndTiedEmbeddings() throws Exception {
        ModelConfig c = ModelConfig.parse(json("{'model_type':'qwen2','hidden_size':896,'intermediate_size':4864,"
                + "'num_hidden_layers':24,'num_attention_heads':14,'num_key_value_heads':2,'vocab_size':151936,"
                + "'tie_word_embeddings':true,'rope_theta':1000000.0,'rms_norm_eps':1e-6}"), FILE);
        assertTrue(c.qkvBias());
        assertTrue(c.tieWordEmbeddings());
        assertFalse(c.layer(0).oProjBias());
        assertEquals(64, c.headDim());
    }

    @Test
    void mistralSlidingWindow() throws Exception {
        ModelConfig c = ModelConfig.parse(json("{'model_type':'mistral','hidden_size':4096,'intermediate_size':14336,"
                + "'num_hidden_layers':32,'num_attention_heads':32,'num_key_value_heads':8,'vocab_size':32000,'sliding_window':4096}"), FILE);
        assertEquals(4096, c.slidingWindow());
        assertEquals(Family.MISTRAL, c.family());
    }

    @Test
    void unknownModelTypeNamesFileAndField() throws Exception {
        ModelFormatException e = assertThrows(ModelFormatException.class, () -> ModelConfig.parse(json("{'model_type':'gpt2'}"), FILE));
        assertEquals("m/config.json: field 'model_type': found 'gpt2', expected one of llama, mistral, qwen2", e.getMessage());
    }

    @Test
    void missingFieldNamesIt() throws Exception {
        ModelFormatException e = assertThrows(ModelFormatException.class, () -> ModelConfig.parse(json(
                "{'model_type':'llama','hidden_size':64,'num_hidden_layers':2,'num_attention_heads':4,'vocab_size':10}"), FILE));
        assertTrue(e.getMessage().contains("'intermediate_size'") && e.getMessage().contains("missing"), e.getMessage());
    }

    @Test
    void badGqaRatio() throws Exception {
        ModelFormatException e = assertThrows(ModelFormatException.class, () -> ModelConfig.parse(json(
                "{'model_type':'llama','hidden_size':64,'intermediate_size':8,'num_hidden_layers':2,'num_attention_heads':4,"
                        + "'num_key_value_heads':3,'vocab_size':10}"), FILE));
        assertTrue(e.getMessage().contains("num_key_value_heads"), e.getMessage());
    }

    @Test
    void perLayerShapesRoundTrip() throws Exception {
        ModelConfig c = ModelConfig.parse(json("{'model_type':'llama','hidden_size':64,'intermediate_size':96,"
                + "'num_hidden_layers':2,'num_attention_heads':4,'num_key_value_heads':2,'vocab_size':300}"), FILE);
        ModelConfig pruned = c.withLayers(List.of(new LayerShape(2, 1, 50, true, true), new LayerShape(4, 2, 96)));
        ObjectNode out = pruned.toJson();
        assertTrue(out.has("lopper_layers"));
        ModelConfig back = ModelConfig.parse(out, FILE);
        assertEquals(pruned.layers(), back.layers());
        // uniform again: standard fields only, as HF loaders expect
        ObjectNode uniform = c.withLayers(List.of(new LayerShape(2, 1, 50), new LayerShape(2, 1, 50))).toJson();
        assertFalse(uniform.has("lopper_layers"));
        assertEquals(2, uniform.get("num_attention_heads").intValue());
        assertEquals(50, uniform.get("intermediate_size").intValue());
    }
}
