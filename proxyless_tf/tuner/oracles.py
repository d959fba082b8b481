"""The oracles, every one scoring trials by the reward (`scoring.Scoring`): keras-tuner's random
search and Bayesian optimisation, and `ProxylessOracle`, the ProxylessNAS controller: the
architecture distribution softmax(alpha), moved by REINFORCE on the finished trials."""

import math

import keras_tuner
import numpy as np

from proxyless_tf import architecture, reinforce
from proxyless_tf.errors import UsageError
from proxyless_tf.tuner.scoring import OBJECTIVE, TRIAL_STATUS, Scoring
from proxyless_tf.tuner.space import hp_name, hyperparameters, op_indices


class RandomOracle(Scoring, keras_tuner.oracles.RandomSearchOracle):
    """keras-tuner's random search over the space, trials scored by the reward."""


class BayesianOracle(Scoring, keras_tuner.oracles.BayesianOptimizationOracle):
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


class ProxylessOracle(Scoring, keras_tuner.Oracle):
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
