package dev.lopper.pruning;

import dev.lopper.pruning.allocation.Allocation;
import dev.lopper.pruning.graph.LayerSelection;
import dev.lopper.pruning.graph.StructureGraph;
import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import dev.lopper.model.LayerHooks;
import dev.lopper.model.LlamaModel;
import dev.lopper.model.config.LayerShape;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.io.TensorMap;
import dev.lopper.model.io.TensorSource;

import java.util.Arrays;
import java.util.List;

/**
 * The "zeroed" reference of the surgery invariants: the ORIGINAL model with every removed structure's rows and
 * columns set to 0 (from the graph's {@link StructureGraph.StructureSet}s, not from surgery's code path), and
 * removed layers skipped in the forward pass.
 */
public final class Reference {
    private Reference() {
    }

    /** Logits [T][vocab] of the original model with the selections' removed structures zeroed and layers skipped. */
    public static float[][] zeroedLogits(ModelConfig config, TensorSource source, List<LayerSelection> sel, long[] ids) {
        try (NDManager m = NDManager.newBaseManager(Device.cpu())) {
            TensorMap zeroed = zeroed(config, source, sel, m);
            boolean[] skip = new boolean[config.numLayers()];
            for (LayerSelection s : sel) {
                skip[s.layer()] = s.removed();
            }
            try (LlamaModel model = LlamaModel.load(config, zeroed, Device.cpu())) {
                return logitsSkipping(model, ids, skip);
            }
        }
    }

    public static TensorMap zeroed(ModelConfig config, TensorSource source, List<LayerSelection> sel, NDManager m) {
        StructureGraph g = StructureGraph.of(config);
        TensorMap map = new TensorMap(source);
        for (LayerSelection s : sel) {
            if (s.removed()) {
                continue;
            }
            int l = s.layer();
            LayerShape shape = config.layer(l);
            int[] goneGroups = Allocation.complement(shape.numKvHeads(), s.keptKvGroups());
            zero(map, g.kvGroups(l), goneGroups, m);
            boolean[] groupGone = new boolean[shape.numKvHeads()];
            for (int x : goneGroups) {
                groupGone[x] = true;
            }
            int[] goneHeads = Arrays.stream(Allocation.complement(shape.numHeads(), s.keptHeads()))
                    .filter(h -> !groupGone[g.groupOf(l, h)]).toArray();
            zero(map, g.queryHeads(l), goneHeads, m);
            zero(map, g.mlpChannels(l), Allocation.complement(shape.intermediateSize(), s.keptChannels()), m);
        }
        return map;
    }

    private static void zero(TensorMap map, StructureGraph.StructureSet set, int[] units, NDManager m) {
        if (units.length == 0) {
            return;
        }
        for (StructureGraph.Member mem : set.members()) {
            NDArray t = map.load(mem.tensor(), m, DataType.FLOAT32);
            Shape shape = t.getShape();
            float[] v = t.toFloatArray();
            long cols = shape.dimension() == 2 ? shape.get(1) : 1;
            long rows = shape.get(0);
            for (int u : units) {
                for (long i = mem.start(u); i < mem.end(u); i++) {
                    if (mem.axis() == 0) {
                        Arrays.fill(v, (int) (i * cols), (int) ((i + 1) * cols), 0f);
                    } else {
                        for (long r = 0; r < rows; r++) {
                            v[(int) (r * cols + i)] = 0f;
                        }
                    }
                }
            }
            map.put(mem.tensor(), m.create(v, shape));
        }
    }

    /** Logits [T][vocab] of one sequence, running only the layers not skipped. */
    public static float[][] logitsSkipping(LlamaModel model, long[] ids, boolean[] skip) {
        try (NDManager scope = NDManager.newBaseManager(Device.cpu())) {
            NDArray x = scope.create(ids, new Shape(1, ids.length));
            NDList rope = model.ropeTables(scope, ids.length);
            NDArray mask = model.mask(scope, ids.length, null);
            NDArray h = model.embed(scope, x);
            for (int i = 0; i < model.config().numLayers(); i++) {
                if (!skip[i]) {
                    h = model.layer(i, h, rope, mask, LayerHooks.NONE);
                }
            }
            return rows(model.head(h).toFloatArray(), ids.length, model.config().vocabSize());
        }
    }

    public static float[][] rows(float[] flat, int t, int v) {
        float[][] out = new float[t][v];
        for (int i = 0; i < t; i++) {
            System.arraycopy(flat, i * v, out[i], 0, v);
        }
        return out;
    }

    public static double maxAbsDiff(float[][] a, float[][] b) {
        double d = 0;
        for (int i = 0; i < a.length; i++) {
            for (int j = 0; j < a[i].length; j++) {
                d = Math.max(d, Math.abs(a[i][j] - b[i][j]));
            }
        }
        return d;
    }

    public static long[] ids(int n, int vocab) {
        long[] ids = new long[n];
        for (int i = 0; i < n; i++) {
            ids[i] = (i * 37L + 5) % vocab;
        }
        return ids;
    }
}
