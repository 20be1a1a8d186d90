package dev.lopper.model;

import ai.djl.Device;
import ai.djl.engine.Engine;

/** Turns a user's device choice ("cpu", "gpu", "gpu:1") into a DJL device, failing clearly when there is none. */
public final class Devices {
    private Devices() {
    }

    public static Device parse(String name) {
        String n = name == null ? "cpu" : name.trim().toLowerCase();
        if (n.equals("cpu")) {
            return Device.cpu();
        }
        if (n.equals("gpu") || n.startsWith("gpu:") || n.equals("cuda") || n.startsWith("cuda:")) {
            int id = n.contains(":") ? Integer.parseInt(n.substring(n.indexOf(':') + 1)) : 0;
            int count = Engine.getInstance().getGpuCount();
            if (count == 0) {
                throw new IllegalArgumentException("--device " + name + ": no GPU is visible to libtorch here (this build's libtorch is '"
                        + Engine.getInstance().getVersion() + "'; build with -Pgpu on a machine with CUDA, see docs/GPU.md); use --device cpu");
            }
            if (id >= count) {
                throw new IllegalArgumentException("--device " + name + ": only " + count + " GPU(s) visible (ids 0.." + (count - 1) + ")");
            }
            return Device.gpu(id);
        }
        throw new IllegalArgumentException("--device " + name + ": expected cpu, gpu or gpu:N");
    }

    /** The name a user would type for {@code device}: "cpu", "gpu:0" (DJL's own toString is "cpu()"). */
    public static String name(Device device) {
        return device.isGpu() ? "gpu:" + device.getDeviceId() : device.getDeviceType();
    }
}
