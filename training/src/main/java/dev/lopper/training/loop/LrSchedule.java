package dev.lopper.training.loop;

/**
 * Learning rate per optimizer step: linear warm-up from 0, then cosine decay to 0 (HF's
 * {@code get_cosine_schedule_with_warmup}, step numbers from 0 as HF's scheduler counts them).
 *
 * <pre>{@code
 * double lr = new LrSchedule(3e-4, 10, 100).at(step);
 * }</pre>
 */
public record LrSchedule(double peak, int warmup, int total) {
    public double at(int step) {
        if (step < warmup) {
            return peak * step / Math.max(1, warmup);
        }
        double progress = (double) (step - warmup) / Math.max(1, total - warmup);
        return peak * Math.max(0, 0.5 * (1 + Math.cos(Math.PI * progress)));
    }
}
