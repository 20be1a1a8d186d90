/**
 * The training jobs, in one layout and one resume rule ({@link dev.lopper.training.job.JobDir}: the model in
 * {@code OUT}, job.json, checkpoints and the {@link dev.lopper.training.job.Curve} in {@code OUT.job/}):
 * {@link dev.lopper.training.job.Recovery} ({@code lopper recover}), {@link dev.lopper.training.job.PruneAndRecover}
 * ({@code --recover-steps}), {@link dev.lopper.training.job.PruneSchedule} (iterative and stepwise methods, steps in
 * memory), {@link dev.lopper.training.job.PruneWhileTraining} (EfficientLLM, BiP) and
 * {@link dev.lopper.training.job.Compresso}; {@link dev.lopper.training.job.ScheduleMethods} is the registry of
 * training-aware methods. docs/TRAINING.md describes them.
 *
 * <pre>{@code
 * Recovery.Outcome o = Recovery.run(new Recovery.Request(pruned, out, Device.cpu(), false, new Recovery.Settings(data, null,
 *         LoraConfig.defaults(), TrainOptions.defaults(200), 0.05, 16, DataType.FLOAT32, false, null, false)), Trainer.Listener.NONE, t -> { });
 * PruneSchedule.Result s = new PruneSchedule().run(scheduleRequest);        // lopper prune --method lora-prune ...
 * }</pre>
 */
package dev.lopper.training.job;
