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

The modules, one concern each:

    space     the space as hyperparameters, arch.json conversions, ProxylessHyperModel
    scoring   RewardSpec and the scoring every oracle shares; the metrics' names
    oracles   RandomOracle, BayesianOracle and ProxylessOracle
    trials    ProxylessTuner and its evaluators (TrainEvaluator, SupernetEvaluator)
"""

# _ExternalLatency and _Policy: the tests build a Reinforce on them as the oracle does.
from proxyless_tf.tuner.oracles import (BayesianOracle, ProxylessOracle, RandomOracle,  # noqa: F401
                                        _ExternalLatency, _Policy)
from proxyless_tf.tuner.scoring import (LATENCY_METRIC, OBJECTIVE, REWARD_METRIC, TRIAL_STATUS,
                                        RewardSpec, Scoring)
from proxyless_tf.tuner.space import (ProxylessHyperModel, architecture_from_values, hp_name,
                                      hyperparameters, op_indices,
                                      probabilities_from_architecture, searchable_ops,
                                      values_from_architecture)
from proxyless_tf.tuner.trials import (ProxylessTuner, SupernetEvaluator, TrainEvaluator,
                                       last_validation_accuracy)

__all__ = [
    "BayesianOracle", "LATENCY_METRIC", "OBJECTIVE", "ProxylessHyperModel", "ProxylessOracle",
    "ProxylessTuner", "REWARD_METRIC", "RandomOracle", "RewardSpec", "Scoring",
    "SupernetEvaluator", "TRIAL_STATUS", "TrainEvaluator", "architecture_from_values", "hp_name",
    "hyperparameters", "last_validation_accuracy", "op_indices",
    "probabilities_from_architecture", "searchable_ops", "values_from_architecture",
]
