package dev.lopper.model.fuzz;

import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lopper.model.ModelDir;
import dev.lopper.model.ModelFormatException;
import dev.lopper.model.WeightNames;
import dev.lopper.model.io.Checkpoint;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Plain regression tests for what the fuzz properties found (and for cases next to them). */
class FuzzRegressionTest {
    @TempDir
    Path tmp;

    private Path safetensors(String header, int dataBytes) throws Exception {
        byte[] json = header.getBytes(StandardCharsets.UTF_8);
        ByteBuffer b = ByteBuffer.allocate(8 + json.length + dataBytes).order(ByteOrder.LITTLE_ENDIAN);
        b.putLong(json.length).put(json);
        Path f = tmp.resolve("x.safetensors");
        Files.write(f, b.array());
        return f;
    }

    private static String refused(Path names, Runnable r) {
        ModelFormatException e = assertThrows(ModelFormatException.class, r::run);
        assertTrue(e.getMessage().startsWith(names.toString()), e.getMessage());
        return e.getMessage();
    }

    @Test
    void aShapeWhoseElementCountOverflowsIsOneLine() throws Exception {
        Path f = safetensors("{\"a\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296], \"data_offsets\": [0, 0]}}", 0);
        assertEquals(f + ": tensor 'a': shape [4294967296,4294967296] has more elements than a file can hold",
                refused(f, () -> Checkpoint.ofFile(f).close()));
    }

    @Test
    void aShapeWhoseByteCountOverflowsIsOneLine() throws Exception {
        Path f = safetensors("{\"a\": {\"dtype\": \"F64\", \"shape\": [2305843009213693952], \"data_offsets\": [0, 0]}}", 0);
        refused(f, () -> Checkpoint.ofFile(f).close());
    }

    @Test
    void aDimensionBeyondLongIsRefusedNotWrapped() throws Exception {
        Path f = safetensors("{\"a\": {\"dtype\": \"U8\", \"shape\": [18446744073709551617], \"data_offsets\": [0, 1]}}", 1);
        assertTrue(refused(f, () -> Checkpoint.ofFile(f).close()).contains("expected non-negative integers"));
    }

    @Test
    void anOffsetBeyondLongIsRefused() throws Exception {
        Path f = safetensors("{\"a\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [18446744073709551616, 18446744073709551617]}}", 1);
        refused(f, () -> Checkpoint.ofFile(f).close());
    }

    @Test
    void layerOfOddNamesIsNoCrash() {
        assertEquals(-1, WeightNames.layerOf("model.layers.x.w"));
        assertEquals(-1, WeightNames.layerOf("model.layers.7"));
        assertEquals(-1, WeightNames.layerOf("model.layers..w"));
        assertEquals(Integer.MAX_VALUE, WeightNames.layerOf("model.layers.99999999999999.w"));
        assertEquals(12, WeightNames.layerOf("model.layers.12.mlp.up_proj.weight"));
    }

    private Path model() throws Exception {
        return FuzzSupport.write(tmp.resolve("m"), FuzzSupport.tiny().withShards(2));
    }

    private void index(Path dir, String json) throws Exception {
        Files.writeString(dir.resolve(Checkpoint.INDEX_FILE), json);
    }

    @Test
    void anIndexNamingAShardOutsideTheDirectoryIsRefused() throws Exception {
        Path m = model();
        ObjectNode idx = (ObjectNode) FuzzSupport.JSON.readTree(m.resolve(Checkpoint.INDEX_FILE).toFile());
        ((ObjectNode) idx.get("weight_map")).put(WeightNames.EMBED, "../m/model-00001-of-00002.safetensors");
        index(m, idx.toString());
        assertTrue(refused(m.resolve(Checkpoint.INDEX_FILE), () -> ModelDir.open(m).close()).contains("a file name in this directory"));
    }

    @Test
    void anIndexWithNonStringShardNamesIsRefused() throws Exception {
        Path m = model();
        ObjectNode idx = (ObjectNode) FuzzSupport.JSON.readTree(m.resolve(Checkpoint.INDEX_FILE).toFile());
        ((ObjectNode) idx.get("weight_map")).putObject(WeightNames.EMBED);
        index(m, idx.toString());
        refused(m.resolve(Checkpoint.INDEX_FILE), () -> ModelDir.open(m).close());
        ((ObjectNode) idx.get("weight_map")).put(WeightNames.EMBED, "a\u0000b");
        index(m, idx.toString());
        refused(m.resolve(Checkpoint.INDEX_FILE), () -> ModelDir.open(m).close());
    }

    @Test
    void anEmptyOrNonObjectIndexIsRefused() throws Exception {
        Path m = model();
        for (String json : new String[] {"", "[]", "5", "null", "{\"weight_map\": []}"}) {
            index(m, json);
            refused(m.resolve(Checkpoint.INDEX_FILE), () -> ModelDir.open(m).close());
        }
    }

    @Test
    void aLopperLayersEntryThatIsNotAnObjectIsRefused() throws Exception {
        Path m = FuzzSupport.write(tmp.resolve("m1"), FuzzSupport.tiny());
        ObjectNode c = (ObjectNode) FuzzSupport.JSON.readTree(m.resolve("config.json").toFile());
        c.putArray("lopper_layers").add(5);
        Files.writeString(m.resolve("config.json"), c.toString());
        assertEquals(m.resolve("config.json") + ": field 'lopper_layers[0]': found NUMBER, expected an object with "
                + "num_attention_heads, num_key_value_heads, intermediate_size", refused(m.resolve("config.json"), () -> ModelDir.open(m).close()));
    }

    @Test
    void aTensorNameWithALineBreakStaysOneLine() throws Exception {
        // found by SafeTensorsFuzzTest: names (and libraries' messages) were echoed with their line breaks
        Path f = safetensors("{\"a\\nb\": {\"shape\": [1], \"data_offsets\": [0, 4]}}", 4);
        assertEquals(f + ": tensor 'a\\nb': dtype missing, expected one of [BF16, BOOL, F16, F32, F64, I16, I32, I64, I8, U8]",
                refused(f, () -> Checkpoint.ofFile(f).close()));
    }

    @Test
    void aTruncatedTokenizerIsOneLineNamingIt() throws Exception {
        Path m = FuzzSupport.write(tmp.resolve("m2"), FuzzSupport.tiny());
        Path tok = m.resolve("tokenizer.json");
        byte[] b = Files.readAllBytes(tok);
        Files.write(tok, java.util.Arrays.copyOf(b, b.length / 2));
        assertTrue(refused(tok, () -> dev.lopper.model.Tokenizer.load(tok)).startsWith(tok + ": not valid JSON: "));
        Files.writeString(tok, "{\"model\": 5}");
        assertEquals(tok + ": expected an HF tokenizer.json: a JSON object with a \"model\" object",
                refused(tok, () -> dev.lopper.model.Tokenizer.load(tok)));
    }

    @Test
    void anAbsurdLayerCountIsRefusedBeforeTheLayersAreBuilt() throws Exception {
        Path m = FuzzSupport.write(tmp.resolve("m3"), FuzzSupport.tiny());
        ObjectNode c = (ObjectNode) FuzzSupport.JSON.readTree(m.resolve("config.json").toFile());
        c.put("num_hidden_layers", Integer.MAX_VALUE);
        Files.writeString(m.resolve("config.json"), c.toString());
        assertEquals(m.resolve("config.json") + ": field 'num_hidden_layers': found 2147483647, expected at most 65536 "
                + "(the number of decoder layers; no LLaMA-family model has more)", refused(m.resolve("config.json"), () -> ModelDir.open(m).close()));
    }
}
