/**
 * LoRA adapters on a frozen model: {@link dev.lopper.training.lora.LoraAdapters} (A and B per adapted projection, PEFT's
 * initialisation), the {@link dev.lopper.training.lora.LoraHook} that adds {@code (alpha / r) B A dropout(x)} to a
 * projection, the {@link dev.lopper.training.lora.LoraTrainee} the training loop trains, and
 * {@link dev.lopper.training.lora.Merge} / {@link dev.lopper.training.lora.PeftIo} to fold the adapters into the
 * weights or write them in PEFT's layout.
 *
 * <pre>{@code
 * try (LoraAdapters lora = LoraAdapters.create(config, LoraConfig.defaults(), 42, Device.cpu())) {
 *     new Trainer<>(new LoraTrainee(LossPass.inMemory(model, LossTerm.CAUSAL_LM), lora, options), TrainingMethod.none(),
 *             data, options, checkpoints, Trainer.Listener.NONE).run();
 *     Merge.save(modelDir, lora, out, DataType.FLOAT32);
 * }
 * }</pre>
 */
package dev.lopper.training.lora;
