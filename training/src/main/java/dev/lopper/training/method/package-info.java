/**
 * Training-aware pruning methods, each one class: {@link dev.lopper.training.method.ScheduleMethod}s that prune in
 * steps with training between them ({@link dev.lopper.training.method.LoraPrune},
 * {@link dev.lopper.training.method.AdaptPrunerMethod}, {@link dev.lopper.training.method.IterativeCriterion}),
 * {@link dev.lopper.training.method.FullTrainingMethod}s that prune inside one run of every weight
 * ({@link dev.lopper.training.method.EfficientLlm}, {@link dev.lopper.training.method.Bip}), and Compresso's
 * hard-concrete masks ({@link dev.lopper.training.method.CompressoTraining}). Their formulas and the differences from
 * each paper's official code: docs/CRITERIA.md.
 *
 * <pre>{@code
 * ScheduleMethods.register(new ScheduleMethods.Entry("my-method", Set.of(), PruneSchedule.job(MyMethod::new),
 *         ScheduleMethods::loraPruneDefaults, LoraConfig.defaults()));   // MyMethod implements ScheduleMethod
 * }</pre>
 */
package dev.lopper.training.method;
