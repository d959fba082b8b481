"""Scoring: the REINFORCE reward of `proxyless_tf.reinforce` as every oracle's score, and the
names of the metrics a trial reports."""

import math

import keras_tuner

from proxyless_tf import reinforce
from proxyless_tf.errors import UsageError
from proxyless_tf.tuner.space import architecture_from_values, searchable_ops

OBJECTIVE = "val_accuracy"
LATENCY_METRIC = "latency_ms"
REWARD_METRIC = "reward"
TRIAL_STATUS = keras_tuner.engine.trial.TrialStatus


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


class Scoring:
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
