package dev.lopper.training.method;

import dev.lopper.training.job.PruneSchedule;
import dev.lopper.training.job.PruneScheduleTest;
import dev.lopper.training.job.ScheduleRequest;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import dev.lopper.model.ModelDir;
import dev.lopper.model.config.ModelConfig;
import dev.lopper.model.layer.Param;
import dev.lopper.model.testing.RandomModels;
import dev.lopper.pruning.PruneRequest;
import dev.lopper.training.lora.LoraAdapters;
import dev.lopper.training.lora.LoraConfig;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** LoRAPrune's importance against a plain-loop computation of the official formula; its schedule by hand. */
public class LoraPruneTest {
    @TempDir
    Path tmp;

    @Test
    void importanceMatchesAPlainLoopComputationOfTheFormula() throws Exception {
        Path dir = tmp.resolve("m");
        RandomModels.write(dir, RandomModels.llama()); // 2 layers, 4 heads in 2 KV groups (r = 2), head_dim 16, 96 channels
        try (ModelDir md = ModelDir.open(dir);
             LoraAdapters lora = LoraAdapters.create(md.config(), LoraConfig.defaults(), 11, Device.cpu());
             NDManager m = NDManager.newBaseManager()) {
            ModelConfig c = md.config();
            List<NDArray> grads = new ArrayList<>();
            for (LoraAdapters.Adapter a : lora.adapters()) {
                a.b().addi(m.randomNormal(0, 0.05f, a.b().getShape(), DataType.FLOAT32)); // B != 0, so s B A counts
                grads.add(m.randomNormal(0, 0.01f, a.a().getShape(), DataType.FLOAT32));
                grads.add(m.randomNormal(0, 0.01f, a.b().getShape(), DataType.FLOAT32));
            }
            UnitScores got = LoraPruneImportance.of(c, md.checkpoint(), lora, grads);

            double s = lora.config().scale();
            int d = c.headDim();
            double[][] kv = new double[c.numLayers()][c.layer(0).numKvHeads()];
            double[][] ch = new double[c.numLayers()][c.layer(0).intermediateSize()];
            List<LoraAdapters.Adapter> ads = lora.adapters();
            for (int i = 0; i < ads.size(); i++) {
                LoraAdapters.Adapter ad = ads.get(i);
                Param p = ad.module().parts().get(0);
                int out = (int) ad.out();
                int in = (int) ad.in();
                int r = lora.config().rank();
                float[] w = md.checkpoint().load(p.tensorName(ad.layer()), m, DataType.FLOAT32).toFloatArray();
                float[] a = ad.a().toFloatArray();
                float[] b = ad.b().toFloatArray();
                float[] da = grads.get(2 * i).toFloatArray();
                float[] db = grads.get(2 * i + 1).toFloatArray();
                boolean attn = p == Param.Q || p == Param.K || p == Param.V || p == Param.O;
                double[] units = new double[attn ? c.layer(ad.layer()).numKvHeads() : c.layer(ad.layer()).intermediateSize()];
                for (int o = 0; o < out; o++) {
                    for (int x = 0; x < in; x++) {
                        double g = 0;
                        double ba = 0;
                        for (int k = 0; k < r; k++) {
                            g += db[o * r + k] * a[k * in + x] + b[o * r + k] * da[k * in + x] - db[o * r + k] * da[k * in + x];
                            ba += b[o * r + k] * a[k * in + x];
                        }
                        double v = Math.abs(g * (w[o * in + x] + s * ba));
                        int unit = switch (p) {
                            case Q -> o / d / 2;          // query head o / d, its KV group (r = 2)
                            case K, V -> o / d;
                            case O -> x / d / 2;          // o_proj: input columns
                            case GATE, UP -> o;
                            case DOWN -> x;
                            default -> throw new IllegalStateException();
                        };
                        units[unit] += v;
                    }
                }
                double norm = 0;
                for (double u : units) {
                    norm += u * u;
                }
                norm = Math.sqrt(norm) + 1e-8;
                double[] target = attn ? kv[ad.layer()] : ch[ad.layer()];
                for (int j = 0; j < units.length; j++) {
                    target[j] += units[j] / norm;
                }
            }
            for (int l = 0; l < c.numLayers(); l++) {
                for (int j = 0; j < kv[l].length; j++) {
                    assertEquals(kv[l][j], got.groups()[l][j], 1e-4 * Math.abs(kv[l][j]), "layer " + l + " group " + j);
                }
                for (int j = 0; j < ch[l].length; j++) {
                    assertEquals(ch[l][j], got.channels()[l][j], 1e-4 * Math.abs(ch[l][j]) + 1e-9, "layer " + l + " channel " + j);
                }
                // four normalized modules per group, three per channel: the sums are bounded by 4 and 3
                assertTrue(kv[l][0] > 0 && kv[l][0] <= 4 && ch[l][0] <= 3);
            }
        }
    }

    @Test
    void oneLinearLearningRateScheduleOverTheRun() {
        Path tmp2 = tmp.resolve("rate");
        ScheduleRequest r = new ScheduleRequest(PruneRequest.builder(tmp2).criterion(LoraPrune.NAME).ratio(0.5).out(tmp2.resolve("o")).build(),
                null, 0, 40, tmp2, null, LoraConfig.defaults(), dev.lopper.training.loop.TrainOptions.defaults(40).withLearningRate(2e-4), 2, 0.05, null);
        dev.lopper.training.loop.ParamGroup.Rate rate = new LoraPrune(r).runRate(r.train());
        // HF's get_linear_schedule_with_warmup(num_warmup_steps=0, num_training_steps=40): lr (40 - t) / 40
        assertEquals(2e-4, rate.at(0), 1e-18);
        assertEquals(2e-4 * 30 / 40, rate.at(10), 1e-18);
        assertEquals(2e-4 / 40, rate.at(39), 1e-18);
    }

    @Test
    void cubicScheduleAndPrunePointsAsTheOfficialTrainer() {
        // the official schedule_sparsity_ratio by hand: T = 100, warm-up and cool-down 10 steps, final 0.5
        assertEquals(0, RatioSchedule.cubic(10, 100, 0.1, 0.1, 0, 0.5));
        assertEquals(0.5 * (1 - Math.pow(1 - 10.0 / 80, 3)), RatioSchedule.cubic(20, 100, 0.1, 0.1, 0, 0.5), 1e-15);
        assertEquals(0.5, RatioSchedule.cubic(90, 100, 0.1, 0.1, 0, 0.5), 1e-15); // 1 - 80/80 = 0
        assertEquals(0.5, RatioSchedule.cubic(91, 100, 0.1, 0.1, 0, 0.5));
        ScheduleRequest r = new ScheduleRequest(PruneRequest.builder(tmp).criterion(LoraPrune.NAME).ratio(0.5).out(tmp.resolve("o")).build(),
                null, 0, 100, tmp, null, LoraConfig.defaults(), dev.lopper.training.loop.TrainOptions.defaults(100), 2, 0.05, null);
        List<Phase> p = new LoraPrune(r).phases();
        // prunes after steps 20, 30, ..., 80 (t % 10 == 0, 0 < ratio < 0.5), then the final 0.5 at step 90, 9 steps of cool-down
        assertEquals(new Phase(null, 21), p.get(0));
        assertEquals(RatioSchedule.cubic(20, 100, 0.1, 0.1, 0, 0.5), p.get(1).pruneTo());
        assertEquals(10, p.get(1).trainSteps());
        assertEquals(9, p.size());
        assertEquals(new Phase(0.5, 9), p.get(8));
        assertEquals(100, p.stream().mapToInt(Phase::trainSteps).sum());
    }

    @Test
    @org.junit.jupiter.api.Tag("slow") // 4 training phases twice: 159 s under a load average of 33 (run with -Dslow)
    void loraPruneReachesTheTargetAndAKilledRunResumesToTheSameModel() throws Exception {
        Path model = tmp.resolve("m6");
        RandomModels.write(model, RandomModels.llama().withLayers(6));
        Path text = tmp.resolve("text.txt");
        java.nio.file.Files.writeString(text, java.nio.file.Files.readString(dev.lopper.model.testing.Fixtures.text("train")).substring(0, 24_000));
        dev.lopper.training.loop.TrainOptions t = dev.lopper.training.loop.TrainOptions.defaults(6).withBatch(1, 1, 16)
                .withLearningRate(1e-2).withSeed(3);
        java.util.function.BiFunction<Path, dev.lopper.model.util.Progress, ScheduleRequest> req = (out, progress) -> new ScheduleRequest(
                PruneRequest.builder(model).criterion(LoraPrune.NAME).option("prune-freq", "2").ratio(0.5).progress(progress)
                        .out(out).build(), null, 0, 6, text, null, LoraConfig.defaults(), t, 2, 0.05, null);
        Path straight = tmp.resolve("straight");
        PruneSchedule.Result r = new PruneSchedule().run(req.apply(straight, dev.lopper.model.util.Progress.NONE));
        // layers 0..4 pruned (int(0.1 x 6) = 0 kept first, the last kept): int(0.5 x 96) = 48 channels, 1 of 2 KV groups
        try (ModelDir d = ModelDir.open(straight)) {
            for (int l = 0; l < 5; l++) {
                assertEquals(48, d.config().layer(l).intermediateSize());
                assertEquals(1, d.config().layer(l).numKvHeads());
            }
            assertEquals(96, d.config().layer(5).intermediateSize());
        }
        assertEquals(5, r.plan().layers().size());
        // one learning-rate schedule over the run (the official trainer's: no warm-up, linear decay), recorded per step
        for (dev.lopper.training.loop.Trainer.Point p : r.curve()) {
            if (p.trainLoss() != null) {
                assertEquals(1e-2 * (6 - (p.step() - 1)) / 6, p.lr(), 1e-15, "step " + p.step());
            }
        }

        // killed in the second training phase: the phase restarts, the importance average comes from step 1's checkpoint
        Path killed = tmp.resolve("killed");
        dev.lopper.model.util.Progress kill = new dev.lopper.model.util.Progress() {
            @Override
            public void message(String line) {
                if (line.startsWith("step 2/") && line.contains("train 1/")) {
                    throw new IllegalStateException("killed");
                }
            }
        };
        org.junit.jupiter.api.Assertions.assertThrows(IllegalStateException.class, () -> new PruneSchedule().run(req.apply(killed, kill)));
        new PruneSchedule().run(req.apply(killed, dev.lopper.model.util.Progress.NONE));
        PruneScheduleTest.assertSameTensors(straight, killed);
    }
}
