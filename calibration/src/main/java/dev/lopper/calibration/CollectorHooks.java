package dev.lopper.calibration;

import ai.djl.ndarray.NDArray;
import dev.lopper.model.LayerHooks;

import java.util.ArrayList;
import java.util.EnumSet;
import java.util.List;
import java.util.Set;

/**
 * Routes {@link dev.lopper.model.Decoder}'s taps to the {@link StatsCollector}s that asked for them (each gets
 * only its {@link StatsCollector#taps()}). Shared by {@link CalibrationEngine} and the gradient engine's forward
 * sweep, so activation statistics are gathered the same way by both.
 */
public final class CollectorHooks implements LayerHooks {
    private final List<? extends StatsCollector> collectors;
    private final List<Set<Tap>> wanted = new ArrayList<>();

    public CollectorHooks(List<? extends StatsCollector> collectors) {
        this.collectors = collectors;
        for (StatsCollector c : collectors) {
            Set<Tap> taps = c.taps();
            wanted.add(taps.isEmpty() ? EnumSet.noneOf(Tap.class) : EnumSet.copyOf(taps));
        }
    }

    private void fire(int layer, Tap tap, NDArray x) {
        for (int i = 0; i < collectors.size(); i++) {
            if (wanted.get(i).contains(tap)) {
                collectors.get(i).activation(layer, tap, x);
            }
        }
    }

    @Override
    public void attentionInput(int layer, NDArray normed) {
        fire(layer, Tap.ATTENTION_INPUT, normed);
    }

    @Override
    public void oProjInput(int layer, NDArray x) {
        fire(layer, Tap.O_PROJ_INPUT, x);
    }

    @Override
    public void mlpInput(int layer, NDArray normed) {
        fire(layer, Tap.MLP_INPUT, normed);
    }

    @Override
    public void downProjInput(int layer, NDArray x) {
        fire(layer, Tap.DOWN_PROJ_INPUT, x);
    }
}
