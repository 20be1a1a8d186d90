package dev.lopper.calibration;

import ai.djl.ndarray.NDArray;

import java.util.ArrayList;
import java.util.Collections;
import java.util.EnumMap;
import java.util.EnumSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/** Collects {@link ChannelStats} for chosen taps of every layer. */
public class ChannelStatsCollector implements StatsCollector {
    private final Set<Tap> taps;
    private final List<Map<Tap, ChannelStats>> perLayer = new ArrayList<>();

    public ChannelStatsCollector(Set<Tap> taps) {
        this.taps = Collections.unmodifiableSet(EnumSet.copyOf(taps));
    }

    @Override
    public Set<Tap> taps() {
        return taps;
    }

    @Override
    public void activation(int layer, Tap tap, NDArray x) {
        while (perLayer.size() <= layer) {
            perLayer.add(new EnumMap<>(Tap.class));
        }
        perLayer.get(layer).computeIfAbsent(tap, k -> new ChannelStats((int) x.getShape().get(2))).add(x);
    }

    /** Statistics of {@code tap} at {@code layer}, or null if the layer never produced it (e.g. no heads left). */
    public ChannelStats get(int layer, Tap tap) {
        return layer < perLayer.size() ? perLayer.get(layer).get(tap) : null;
    }

    @Override
    public boolean resumable() {
        return true;
    }

    @Override
    public void saveLayer(int layer, java.io.DataOutputStream out) throws java.io.IOException {
        Map<Tap, ChannelStats> m = layer < perLayer.size() ? perLayer.get(layer) : Map.of();
        out.writeInt(m.size());
        for (Map.Entry<Tap, ChannelStats> e : m.entrySet()) {
            out.writeUTF(e.getKey().name());
            e.getValue().write(out);
        }
    }

    @Override
    public void loadLayer(int layer, java.io.DataInputStream in) throws java.io.IOException {
        while (perLayer.size() <= layer) {
            perLayer.add(new EnumMap<>(Tap.class));
        }
        Map<Tap, ChannelStats> m = perLayer.get(layer);
        m.clear();
        int n = in.readInt();
        for (int i = 0; i < n; i++) {
            m.put(Tap.valueOf(in.readUTF()), ChannelStats.read(in));
        }
    }
}
