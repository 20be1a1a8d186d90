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

    /** Fields as in Qwen/Qwen3-0.6B's config.json: head_dim 128 while hidden_size / heads is 64. */
    @Test
    void qwen3HasQkNormAndExplicitHeadDim() throws Exception {
        String fields = "'model_type':'qwen3','architectures':['Qwen3ForCausalLM'],'hidden_size':1024,'intermediate_size':3072,"
                + "'num_hidden_layers':28,'num_attention_heads':16,'num_key_value_heads':8,'vocab_size':151936,"
                + "'tie_word_embeddings':true,'rope_theta':1000000,'rms_norm_eps':1e-6,'attention_bias':false,"
                + "'use_sliding_window':false,'sliding_window':null,'max_window_layers':28,'rope_scaling':null";
        ModelConfig c = ModelConfig.parse(json("{" + fields + ",'head_dim':128}"), FILE);
        assertEquals(Family.QWEN3, c.family());
        assertTrue(c.family().hasQkNorm());
        assertFalse(c.family().fusedProjections());
        assertEquals(128, c.headDim());
        assertFalse(c.qkvBias());
        assertFalse(c.layer(0).oProjBias());
        assertTrue(c.tieWordEmbeddings());
        assertEquals(0, c.slidingWindow());
        // Qwen3Config's default head_dim is 128, not hidden_size / num_attention_heads
        assertEquals(128, ModelConfig.parse(json("{" + fields + "}"), FILE).headDim());
        ModelFormatException e = assertThrows(ModelFormatException.class, () -> ModelConfig.parse(json(
                "{" + fields.replace("'use_sliding_window':false", "'use_sliding_window':true") + "}"), FILE));
        assertTrue(e.getMessage().startsWith("m/config.json: field 'use_sliding_window': found true"), e.getMessage());
    }

    /** Fields as in microsoft/Phi-3-mini-4k-instruct's config.json. */
    @Test
    void phi3IsFusedWithSlidingWindow() throws Exception {
        String fields = "'model_type':'phi3','architectures':['Phi3ForCausalLM'],'hidden_size':3072,'intermediate_size':8192,"
                + "'num_hidden_layers':32,'num_attention_heads':32,'num_key_value_heads':32,'vocab_size':32064,"
                + "'hidden_act':'silu','max_position_embeddings':4096,'original_max_position_embeddings':4096,"
                + "'rms_norm_eps':1e-5,'rope_theta':10000.0,'sliding_window':2047,'tie_word_embeddings':false,"
                + "'resid_pdrop':0.0,'embd_pdrop':0.0,'attention_dropout':0.0,'bos_token_id':1,'eos_token_id':32000";
        ModelConfig c = ModelConfig.parse(json("{" + fields + ",'rope_scaling':null}"), FILE);
        assertEquals(Family.PHI3, c.family());
        assertTrue(c.family().fusedProjections());
        assertFalse(c.family().hasQkNorm());
        assertEquals(96, c.headDim());
        assertEquals(2047, c.slidingWindow());
        assertFalse(c.qkvBias());
        // Phi-3-mini-128k / Phi-3.5: long-context RoPE; Phi-4-mini: partial rotary; both refused with one line
        ModelFormatException e = assertThrows(ModelFormatException.class, () -> ModelConfig.parse(json("{" + fields
                + ",'rope_scaling':{'type':'longrope','short_factor':[1.0],'long_factor':[2.0]}}"), FILE));
        assertTrue(e.getMessage().startsWith("m/config.json: field 'rope_scaling.type': found 'longrope'"), e.getMessage());
        e = assertThrows(ModelFormatException.class, () -> ModelConfig.parse(json("{" + fields
                + ",'rope_scaling':{'type':'su','short_factor':[1.0],'long_factor':[2.0]}}"), FILE));
        assertTrue(e.getMessage().contains("'rope_scaling.type': found 'su'"), e.getMessage());
        e = assertThrows(ModelFormatException.class, () -> ModelConfig.parse(json("{" + fields + ",'partial_rotary_factor':0.75}"), FILE));
        assertTrue(e.getMessage().startsWith("m/config.json: field 'partial_rotary_factor': found 0.75"), e.getMessage());
        assertFalse(e.getMessage().contains("\n"));
    }

    @Test
    void unknownModelTypeNamesFileAndField() throws Exception {
        ModelFormatException e = assertThrows(ModelFormatException.class, () -> ModelConfig.parse(json("{'model_type':'gpt2'}"), FILE));
        assertEquals("m/config.json: field 'model_type': found 'gpt2', expected one of llama, mistral, qwen2, qwen3, phi3", e.getMessage());
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
