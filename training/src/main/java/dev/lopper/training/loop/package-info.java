/**
 * The one training loop: {@link dev.lopper.training.loop.Trainer} trains a {@link dev.lopper.training.loop.Trainee}
 * (its parameters in {@link dev.lopper.training.loop.ParamGroup}s, the forward/backward of a micro-batch) with
 * accumulation, clipping, one AdamW per group, validation, Ctrl-C and atomic {@link dev.lopper.training.loop.Checkpoints};
 * methods plug in through {@link dev.lopper.training.loop.TrainingMethod} hooks, the loss through a
 * {@link dev.lopper.training.loop.LossTerm}. Also: {@link dev.lopper.training.loop.AdamW},
 * {@link dev.lopper.training.loop.LrSchedule}, {@link dev.lopper.training.loop.TrainOptions},
 * {@link dev.lopper.training.loop.TrainingData}, the trainable {@link dev.lopper.training.loop.FullModel}.
 *
 * <pre>{@code
 * FullTrainee trainee = new FullTrainee(FullModel.load(config, checkpoint, Device.cpu()), options,
 *         () -> FullModel.LayerTransform.NONE, LossTerm.CAUSAL_LM);
 * Trainer.Result r = new Trainer<>(trainee, TrainingMethod.none(), data, options, checkpoints, Trainer.Listener.NONE).run();
 * }</pre>
 */
package dev.lopper.training.loop;
