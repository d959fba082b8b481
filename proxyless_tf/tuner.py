"""keras-tuner integration: the search space as HyperParameters, a HyperModel, and the
ProxylessNAS architecture distribution as a keras-tuner Oracle.

* `hyperparameters(space)`: one `Choice` per searchable block, named `block{index}` (the block's
  index in arch.json's `blocks`), whose values are the block's candidate op names. Every
  keras-tuner oracle (RandomSearch, BayesianOptimization, Hyperband, ...) then searches exactly
  the space the supernet searches; `architecture_from_values` / `values_from_architecture`
  convert a trial's values to and from arch.json.
* `ProxylessHyperModel(space)`: builds the standalone network of a trial's values with the
  project's block builder (compiled, so keras-tuner's own `Tuner` can fit it).
* `ProxylessOracle`: `populate_space` samples an architecture from softmax(alpha), block by block;
  `end_trial` scores the trial with the REINFORCE reward of `proxyless_tf.reinforce`
  (ACC*(LAT/T)^w or ACC + beta*|LAT/T-1|, ACC being the trial's objective and LAT the
  architecture's latency from a table or as the trial measured it) and, every M finished trials,
  moves alpha along the policy gradient with a moving-average baseline (`Reinforce.update`, fed
  with the finished trials instead of fresh samples). Alpha, the Adam slots, the baseline and
  the sampler's random state are part of `get_state`/`set_state`, so a project resumes exactly;
  the oracle runs unchanged as keras-tuner's chief in distributed tuning.
* `RandomOracle`, `BayesianOracle`: keras-tuner's own oracles with the same scoring, so every
  oracle ranks trials by the same reward.
* `ProxylessTuner`: runs a trial (train the candidate for a short budget with
  `proxyless_tf.train.train`, or score it with a finished supernet's weights) and reports its
  validation accuracy and latency.

A trial's `score` is its reward; with no latency target the reward is the accuracy itself.
"""

import csv
import math
import os

import keras_tuner
import numpy as np

from proxyless_tf import architecture, reinforce
from proxyless_tf.errors import UsageError

OBJECTIVE = "val_accuracy"
LATENCY_METRIC = "latency_ms"
REWARD_METRIC = "reward"
TRIAL_STATUS = keras_tuner.engine.trial.TrialStatus


# --- the space as hyperparameters ----------------------------------------------------------
def hp_name(position):
    return f"block{position.index}"


def hyperparameters(space, hp=None):
    """The searchable blocks of `space` as `Choice`s (registered on `hp` when given)."""
    hp = hp if hp is not None else keras_tuner.HyperParameters()
    for p in space.searchable_positions():
        hp.Choice(hp_name(p), list(p.candidates), default=p.candidates[0])
    return hp


def op_indices(space, values):
    """Candidate index per searchable block of the ops `values` names."""
    indices = []
    for p in space.searchable_positions():
        name = hp_name(p)
        if name not in values:
            raise UsageError(f"hyperparameter values have no {name!r} (block {p.index})")
        op = values[name]
        if op not in p.candidates:
            raise UsageError(f"hyperparameter {name}={op!r} is not a candidate of block {p.index} "
                             f"(candidates: {', '.join(p.candidates)})")
        indices.append(p.candidates.index(op))
    return indices


def searchable_ops(space, values):
    """The ops `values` chooses, one per searchable block, in block order."""
    positions = space.searchable_positions()
    return [p.candidates[k] for p, k in zip(positions, op_indices(space, values))]


def architecture_from_values(space, values, name="tuned", probs=None):
    """The arch of a trial: `values` maps `block{i}` to an op (a dict or HyperParameters; keys
    keras-tuner adds itself, such as Hyperband's `tuner/epochs`, are ignored)."""
    if isinstance(values, keras_tuner.HyperParameters):
        values = values.values
    return architecture.from_space(space, searchable_ops(space, values), name=name, probs=probs)


def values_from_architecture(space, arch, source="architecture"):
    """The hyperparameter values of `arch`, which must be a network of `space`."""
    positions = space.positions()
    if len(arch.blocks) != len(positions):
        raise UsageError(f"{source} has {len(arch.blocks)} blocks but the search space has "
                         f"{len(positions)}: give the flags of the space it came from")
    values = {}
    for p, block in zip(positions, arch.blocks):
        if (block.in_channels, block.out_channels, block.stride) != \
                (p.in_channels, p.out_channels, p.stride):
            raise UsageError(f"{source}: block {p.index} is {block.in_channels}->"
                             f"{block.out_channels} stride {block.stride} but the search space "
                             f"has {p.in_channels}->{p.out_channels} stride {p.stride}")
        if p.searchable:
            if block.op not in p.candidates:
                raise UsageError(f"{source}: block {p.index} op {block.op!r} is not a candidate "
                                 f"({', '.join(p.candidates)})")
            values[hp_name(p)] = block.op
    return values


def probabilities_from_architecture(space, arch, source="architecture"):
    """Per searchable block, the probabilities a finished search left in arch.json's `probs`
    (in the block's candidate order)."""
    values_from_architecture(space, arch, source)  # same space
    probs = []
    for p, block in zip(space.positions(), arch.blocks):
        if not p.searchable:
            continue
        if not block.probs or set(block.probs) != set(p.candidates):
            raise UsageError(f"{source}: block {p.index} has no probabilities over its candidates "
                             f"{', '.join(p.candidates)} (is it a search's arch.json?)")
        row = np.array([float(block.probs[c]) for c in p.candidates])
        if not np.all(np.isfinite(row)) or row.min() < 0 or row.sum() <= 0:
            raise UsageError(f"{source}: block {p.index} has invalid probabilities {block.probs}")
        probs.append(row / row.sum())
    return probs


class ProxylessHyperModel(keras_tuner.HyperModel):
    """Builds the standalone network of a trial. Compiled with SGD and a sparse cross-entropy on
    logits, metric `accuracy`, so keras-tuner's own tuners can `search(x, y, validation_data=...)`
    with integer labels and objective `val_accuracy`."""

    def __init__(self, space, learning_rate=0.05, name="proxyless"):
        super().__init__(name=name)
        self.space = space
        self.learning_rate = learning_rate

    def declare_hyperparameters(self, hp):
        hyperparameters(self.space, hp)

    def architecture(self, hp, name="tuned"):
        values = {hp_name(p): hp.Choice(hp_name(p), list(p.candidates), default=p.candidates[0])
                  for p in self.space.searchable_positions()}
        return architecture_from_values(self.space, values, name=name)

    def build(self, hp):
        import keras
        from proxyless_tf import blocks
        model = blocks.build_network(self.architecture(hp, name="candidate"))
        model.compile(optimizer=keras.optimizers.SGD(self.learning_rate, momentum=0.9,
                                                     nesterov=True),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
        return model


# --- scoring: the REINFORCE reward as every oracle's score ------------------------------------
class RewardSpec:
    """`proxyless_tf.reinforce.reward` with the flags' settings: `spec(accuracy, latency_ms)`."""

    def __init__(self, form="mul", w=-0.07, beta=-0.5, target_ms=None):
        if form not in reinforce.REWARDS:
            raise UsageError(f"--reinforce_reward={form!r}: use one of "
                             f"{', '.join(reinforce.REWARDS)}")
        if target_ms is not None and not target_ms > 0:
            raise UsageError(f"the latency target must be positive, got {target_ms}")
        self.reward_form, self.w, self.beta = form, float(w), float(beta)
        self.target_ms = None if target_ms is None else float(target_ms)

    @property
    def uses_latency(self):
        return self.target_ms is not None

    def __call__(self, accuracy, latency_ms):
        return float(reinforce.reward(accuracy, latency_ms, self.target_ms, self.reward_form,
                                      self.w, self.beta))

    def describe(self):
        if not self.uses_latency:
            return "reward = accuracy (no latency target)"
        if self.reward_form == "mul":
            return f"reward = ACC*(LAT/{self.target_ms:.4g} ms)^{self.w:g}"
        return f"reward = ACC + {self.beta:g}*|LAT/{self.target_ms:.4g} ms - 1|"


class _Scoring:
    """Mixed into a keras-tuner Oracle: a trial's score is the reward of its objective value and
    its latency (`latency(arch)` in ms, e.g. a table's prediction; else the trial's own
    `latency_ms` metric, which a worker measured). Prints one line per finished trial instead of
    keras-tuner's table (`report=False` silences it)."""

    def __init__(self, *args, space, latency=None, reward=None, report=True, **kwargs):
        super().__init__(*args, **kwargs)
        self.space = space
        self.latency = latency
        self.reward_spec = reward or RewardSpec()
        self.report = report
        self.verbose = 0  # keras-tuner's display would print the reward as the objective

    def trial_architecture(self, trial, name=None):
        return architecture_from_values(self.space, trial.hyperparameters.values,
                                        name=name or f"trial_{trial.trial_id}")

    def trial_latency(self, trial):
        if self.latency is not None:
            return float(self.latency(self.trial_architecture(trial)))
        if trial.metrics.exists(LATENCY_METRIC):
            return float(trial.metrics.get_last_value(LATENCY_METRIC))
        return math.nan

    def score_trial(self, trial):
        super().score_trial(trial)
        accuracy = trial.score
        latency_ms = self.trial_latency(trial)
        reward = self.reward_spec(accuracy, latency_ms)
        step = trial.best_step or 0
        if not trial.metrics.exists(LATENCY_METRIC) and not math.isnan(latency_ms):
            trial.metrics.register(LATENCY_METRIC, direction="min")
            trial.metrics.update(LATENCY_METRIC, latency_ms, step=step)
        trial.metrics.metrics.pop(REWARD_METRIC, None)  # a retried trial is scored afresh
        trial.metrics.register(REWARD_METRIC, direction="max")
        trial.metrics.update(REWARD_METRIC, reward, step=step)
        trial.score = reward

    def trial_summary(self, trial):
        """accuracy, latency_ms, reward of a scored trial (floats; nan where unknown)."""
        get = lambda name: float(trial.metrics.get_last_value(name)) \
            if trial.metrics.exists(name) else math.nan
        return get(self.objective.name), get(LATENCY_METRIC), get(REWARD_METRIC)

    def after_trial(self, trial):
        """Hook for subclasses, called (under the oracle's lock) when a trial has completed;
        returns extra text for the trial's line."""
        return ""

    @keras_tuner.synchronized
    def end_trial(self, trial):
        super().end_trial(trial)
        trial = self.trials[trial.trial_id]
        extra = ""
        if trial.status == TRIAL_STATUS.COMPLETED:
            extra = self.after_trial(trial)
            self.save()
        if self.report:
            ops = " ".join(searchable_ops(self.space, trial.hyperparameters.values))
            if trial.status == TRIAL_STATUS.COMPLETED:
                acc, lat, reward = self.trial_summary(trial)
                best = self.get_best_trials(1)[0]
                lat = "unknown" if math.isnan(lat) else f"{lat:.4g} ms"
                line = (f"trial {trial.trial_id} [{ops}]: {self.objective.name} {acc:.4f}, "
                        f"latency {lat}, reward {reward:.4f} (best so far: trial "
                        f"{best.trial_id}, {best.score:.4f})")
            else:
                reason = (trial.message or "").strip().splitlines()
                line = f"trial {trial.trial_id} [{ops}]: {trial.status}" + \
                    (f" ({reason[-1]})" if reason else "")
            done = len(self.end_order)
            print(f"[{done}/{self.max_trials}] {line}{extra}", flush=True)


class RandomOracle(_Scoring, keras_tuner.oracles.RandomSearchOracle):
    """keras-tuner's random search over the space, trials scored by the reward."""


class BayesianOracle(_Scoring, keras_tuner.oracles.BayesianOptimizationOracle):
    """keras-tuner's Bayesian optimisation (a Gaussian process over the Choices' encodings)
    over the space, trials scored by the reward."""


# --- the ProxylessNAS controller as an Oracle ------------------------------------------------
class _ExternalLatency:
    """Stands in for `Reinforce`'s meter: latencies reach the oracle with the trials."""

    def measure_arch(self, arch):
        raise RuntimeError("the oracle's latencies come from its trials")


class _Policy:
    """What `Reinforce` reads of a supernet: its space and, per searchable block, the candidate
    names and alpha."""

    def __init__(self, space, alphas):
        import keras

        class Block:
            def __init__(self, candidates, alpha):
                self.candidates = candidates
                self.alpha = alpha

        self.space = space
        self.mixed_ops = [
            Block(p.candidates, keras.Variable(np.asarray(a, "float32"), trainable=False,
                                               name=f"alpha_block{p.index}"))
            for p, a in zip(space.searchable_positions(), alphas)]


class ProxylessOracle(_Scoring, keras_tuner.Oracle):
    """The ProxylessNAS architecture distribution softmax(alpha) as a keras-tuner Oracle.

    Args:
        space: the SearchSpace; its searchable blocks are the hyperparameters.
        objective: the metric trials report (default `val_accuracy`, maximised); it is the ACC
            of the reward.
        max_trials: trials in all.
        latency: optional `arch -> ms` (a latency table's `predict`); without it the latency is
            the trial's `latency_ms` metric (measured by the worker), or unknown.
        reward: a `RewardSpec` (form, w, beta, target_ms); no target: reward = accuracy.
        lr, beta1, beta2: Adam on alpha; baseline_decay: the moving-average reward baseline.
        samples_per_update: M, finished trials per policy-gradient update.
        init_probs: per searchable block, starting probabilities (e.g. from a finished supernet
            search's arch.json); alpha = log p. Default: uniform (alpha = 0).
        seed: seeds the architecture sampler.
    """

    def __init__(self, space, objective=OBJECTIVE, max_trials=10, latency=None, reward=None,
                 lr=0.05, beta1=0.0, beta2=0.999, baseline_decay=0.99, samples_per_update=1,
                 init_probs=None, seed=0, report=True, **kwargs):
        if isinstance(objective, str):
            objective = keras_tuner.Objective(objective, "max")
        if samples_per_update < 1:
            raise UsageError(f"--tune_samples_per_update must be at least 1, got "
                             f"{samples_per_update}")
        super().__init__(space=space, latency=latency, reward=reward, report=report,
                         objective=objective, max_trials=max_trials,
                         hyperparameters=hyperparameters(space), allow_new_entries=False,
                         tune_new_entries=False, seed=seed + 1, **kwargs)
        positions = space.searchable_positions()
        if init_probs is None:
            alphas = [np.zeros(len(p.candidates)) for p in positions]
        else:
            if len(init_probs) != len(positions) or any(
                    len(row) != len(p.candidates) for row, p in zip(init_probs, positions)):
                raise UsageError("starting probabilities do not match the space's searchable "
                                 "blocks")
            alphas = [np.log(np.maximum(np.asarray(row, np.float64), 1e-8)) for row in init_probs]
        self.samples_per_update = int(samples_per_update)
        spec = self.reward_spec
        # Reinforce's own sampling and update; the oracle feeds it finished trials instead of
        # architectures sampled and evaluated on the spot (Reinforce.step).
        self.reinforce = reinforce.Reinforce(
            _Policy(space, alphas), samples=self.samples_per_update, reward=spec.reward_form,
            w=spec.w, beta=spec.beta, baseline_decay=baseline_decay, lr=lr, beta1=beta1,
            beta2=beta2, seed=seed, target_ms=spec.target_ms,
            latency_source="measure" if spec.uses_latency else "table",
            meter=_ExternalLatency())
        self.pending = []   # completed trial ids not yet used by an update
        self.updates = 0
        self.update_log = []  # one record per update

    # the distribution
    def probabilities(self):
        """softmax(alpha) per searchable block (numpy, in candidate order)."""
        return self.reinforce.probabilities()

    def probabilities_by_block(self):
        return {hp_name(p): dict(zip(p.candidates, (float(v) for v in probs)))
                for p, probs in zip(self.space.searchable_positions(), self.probabilities())}

    def derived_architecture(self, name="derived"):
        """argmax of alpha in every block, with the probabilities (as a supernet search's)."""
        probs = self.probabilities()
        ops = [p.candidates[int(np.argmax(row))]
               for p, row in zip(self.space.searchable_positions(), probs)]
        return architecture.from_space(self.space, ops, name=name, probs=[
            dict(zip(p.candidates, map(float, row)))
            for p, row in zip(self.space.searchable_positions(), probs)])

    # keras-tuner hooks
    def populate_space(self, trial_id):
        indices = self.reinforce.sample(self.probabilities())
        values = {hp_name(p): p.candidates[k]
                  for p, k in zip(self.space.searchable_positions(), indices)}
        return {"status": TRIAL_STATUS.RUNNING, "values": values}

    def after_trial(self, trial):
        self.pending.append(trial.trial_id)
        if len(self.pending) < self.samples_per_update:
            return f"; alpha update after {self.samples_per_update - len(self.pending)} more"
        indices, accuracies, latencies = [], [], []
        for trial_id in self.pending:
            done = self.trials[trial_id]
            accuracy, latency_ms, _ = self.trial_summary(done)
            indices.append(op_indices(self.space, done.hyperparameters.values))
            accuracies.append(accuracy)
            latencies.append(latency_ms)
        stats = self.reinforce.update(indices, accuracies, latencies)
        self.updates += 1
        self.update_log.append(dict(update=self.updates, trials=list(self.pending),
                                     **{k: None if math.isnan(v) else float(v)
                                        for k, v in stats.items()}))
        self.pending = []
        return f"; alpha update {self.updates}, baseline {stats['baseline']:.4f}"

    def get_state(self):
        state = super().get_state()
        rl = self.reinforce
        state["proxyless"] = {
            "alphas": [np.asarray(a.numpy(), np.float64).tolist() for a in rl.alphas],
            "optimizer": [np.asarray(v.numpy()).tolist() for v in rl.optimizer.variables],
            "baseline": float(rl.baseline.numpy()),
            "baseline_set": bool(rl.baseline_set.numpy()),
            "rng": rl.rng.bit_generator.state,
            "pending": list(self.pending),
            "updates": self.updates,
            "update_log": self.update_log,
        }
        return state

    def set_state(self, state):
        super().set_state(state)
        saved = state.get("proxyless")
        if saved is None:
            raise UsageError("the tuner project was not made by the proxyless oracle; use its "
                             "own --oracle or another --tune_project")
        rl = self.reinforce
        if [len(a) for a in saved["alphas"]] != [int(a.shape[0]) for a in rl.alphas]:
            raise UsageError("the tuner project was made for another search space; use the "
                             "same space flags or another --tune_project")
        for variable, value in zip(rl.alphas, saved["alphas"]):
            variable.assign(np.asarray(value, "float32"))
        for variable, value in zip(rl.optimizer.variables, saved["optimizer"]):
            variable.assign(np.asarray(value).astype(variable.dtype))
        rl.baseline.assign(saved["baseline"])
        rl.baseline_set.assign(saved["baseline_set"])
        rl.rng.bit_generator.state = saved["rng"]
        self.pending = list(saved["pending"])
        self.updates = int(saved["updates"])
        self.update_log = list(saved["update_log"])


# --- running trials ---------------------------------------------------------------------------
class ProxylessTuner(keras_tuner.engine.base_tuner.BaseTuner):
    """Runs trials: `evaluate(arch, trial_dir) -> accuracy` (see `TrainEvaluator`,
    `SupernetEvaluator`), plus `latency(arch) -> ms` when given (a table, or a measurement),
    reported as the `latency_ms` metric."""

    def __init__(self, oracle, hypermodel, evaluate, latency=None, announce=False, **kwargs):
        self.evaluate = evaluate
        self.latency = latency
        self.announce = announce  # print a line per trial run here (a worker's log)
        super().__init__(oracle, hypermodel, **kwargs)

    def _populate_initial_space(self):
        # The space is known without building a network (BaseTuner builds one to find it).
        hp = self.oracle.get_space()
        self.hypermodel.declare_hyperparameters(hp)
        self.oracle.update_space(hp)

    def run_trial(self, trial, *args, **kwargs):
        arch = architecture_from_values(self.hypermodel.space, trial.hyperparameters.values,
                                        name=f"trial_{trial.trial_id}")
        metrics = {self.oracle.objective.name: float(
            self.evaluate(arch, self.get_trial_dir(trial.trial_id)))}
        if self.latency is not None:
            metrics[LATENCY_METRIC] = float(self.latency(arch))
        if self.announce:
            ops = " ".join(searchable_ops(self.hypermodel.space, trial.hyperparameters.values))
            print(f"{self.tuner_id}: trial {trial.trial_id} [{ops}]: " +
                  ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()), flush=True)
        return metrics


class TrainEvaluator:
    """Trains the candidate for a short budget with the retraining code
    (`proxyless_tf.train.train`) in TRIAL_DIR/train and returns its validation accuracy after
    the last epoch. An interrupted trial resumes from its checkpoint when keras-tuner retries it."""

    def __init__(self, splits, config, dataset=None, data_dir=None):
        self.splits = splits
        self.config = config
        self.dataset, self.data_dir = dataset, data_dir

    def __call__(self, arch, trial_dir):
        import keras
        from proxyless_tf import train
        keras.utils.clear_session()
        output_dir = os.path.join(trial_dir, "train")
        train.train(arch, self.splits, output_dir, self.config, dataset=self.dataset,
                    data_dir=self.data_dir)
        return last_validation_accuracy(os.path.join(output_dir, "history.csv"))


def last_validation_accuracy(history_csv):
    with open(history_csv) as f:
        rows = list(csv.DictReader(f))
    if not rows or not rows[-1].get("val_accuracy"):
        raise RuntimeError(f"{history_csv} has no val_accuracy (is the validation split smaller "
                           "than a batch?)")
    return float(rows[-1]["val_accuracy"])


class SupernetEvaluator:
    """Scores a candidate with the weights of a finished supernet search (no training): the
    supernet with its paths fixed to the candidate's ops, on the validation split."""

    def __init__(self, space, search_dir, splits, batch_size):
        import tensorflow as tf
        from proxyless_tf.supernet import Supernet
        latest = tf.train.latest_checkpoint(os.path.join(search_dir, "checkpoints"))
        derived = os.path.join(search_dir, "arch.json")
        if latest is None or not os.path.exists(derived):
            raise UsageError(f"--tune_supernet={search_dir!r} has no checkpoints/ and arch.json "
                             "of a search")
        # Checkpoints match variables by position, and blocks of equal shapes would restore
        # silently into another space: the search's arch.json must describe this space, with
        # probabilities over these candidates.
        probs = probabilities_from_architecture(space, architecture.Architecture.load(derived),
                                                f"--tune_supernet={search_dir}: {derived}")
        self.net = Supernet(space)
        try:
            tf.train.Checkpoint(supernet=self.net).restore(latest) \
                .expect_partial().assert_existing_objects_matched()
        except (AssertionError, ValueError) as e:
            raise UsageError(f"--tune_supernet={search_dir!r} does not match the space of these "
                             f"flags (give the search's flags): {str(e).splitlines()[0]}") from None
        # The search writes arch.json with softmax(alpha) right after each checkpoint: the
        # restored alphas must give those probabilities, or the checkpoint did not hold the
        # searchable blocks (and their weights would be left at random values).
        restored = self.net.probabilities()
        if any(not np.allclose(got, want, atol=1e-4) for got, want in zip(restored, probs)):
            raise UsageError(f"--tune_supernet={search_dir!r}: the alphas in {latest} do not give "
                             f"the probabilities of {derived}; the checkpoint does not hold the "
                             "supernet's searchable blocks, or arch.json is from another point "
                             "of the search")
        self.valid = splits.valid
        self.steps = max(1, splits.valid_size // batch_size)

        def accuracy(images, labels, paths):
            logits = self.net(images, mode="binary", paths=paths, training=False)
            hits = tf.equal(tf.argmax(logits, -1, output_type=tf.int32), tf.cast(labels, tf.int32))
            return tf.reduce_sum(tf.cast(hits, tf.float32)), tf.cast(tf.size(labels), tf.float32)

        self._accuracy = tf.function(accuracy)

    def __call__(self, arch, trial_dir):
        paths = self.net.paths_for(arch)
        hits = total = 0.0
        for images, labels in self.valid.take(self.steps):
            h, n = self._accuracy(images, labels, paths)
            hits, total = hits + float(h), total + float(n)
        return hits / total
