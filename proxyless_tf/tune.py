"""`python -m proxyless_tf.tune --flagfile=flags/mobile.cfg --oracle=proxyless|random|bayesian
--max_trials=N --output_dir=DIR`

Searches the flags' space with keras-tuner: every trial is one architecture, trained for a short
budget (--tune_epochs, --tune_steps_per_epoch, with the retraining recipe of proxyless_tf.train)
or, with --tune_supernet=SEARCH_DIR, scored with the weights of a finished supernet search.
A trial's score is the REINFORCE reward of its validation accuracy and its latency (from
--latency_table, or measured with --latency_source=measure); without a latency target it is the
accuracy. --oracle=proxyless samples architectures from softmax(alpha) and updates alpha with
REINFORCE (see proxyless_tf.tuner and docs/tuner.md).

Leaves in DIR: PROJECT/ (keras-tuner's project directory: oracle.json, trial_*/trial.json, each
trial's training in trial_*/train/; PROJECT defaults to the oracle's name; rerunning the command
resumes it), arch.json (the best trial's architecture, with a `tune` record of its accuracy,
latency and reward; proxyless_tf.train and export take it), tune_results.json (every trial) and
flags.txt.

Distributed (keras-tuner's own mechanism): run the same command in several processes with
KERASTUNER_TUNER_ID=chief (the oracle; it writes the outputs) or worker0, worker1, ... (they run
trials), and KERASTUNER_ORACLE_IP / KERASTUNER_ORACLE_PORT naming the chief (see BUILD.md).
"""

import math
import os
import sys
import time

if __name__ == "__main__":  # before anything loads TensorFlow: no native start-up lines
    from proxyless_tf import quiet
    quiet.start_tensorflow()

from absl import app, logging  # noqa: E402

from proxyless_tf import architecture, io_utils, options  # noqa: E402
from proxyless_tf.errors import UsageError, exit_on_usage_error  # noqa: E402

FLAGS = options.FLAGS
ORACLES = ("proxyless", "random", "bayesian")


def distributed_role():
    """None when not distributed, else 'chief' or 'worker', by keras-tuner's environment rule."""
    if "KERASTUNER_ORACLE_IP" not in os.environ:
        return None
    for name in ("KERASTUNER_ORACLE_PORT", "KERASTUNER_TUNER_ID"):
        if not os.environ.get(name):
            raise UsageError(f"KERASTUNER_ORACLE_IP is set but {name} is not: distributed tuning "
                             "needs KERASTUNER_ORACLE_IP, KERASTUNER_ORACLE_PORT and "
                             "KERASTUNER_TUNER_ID (chief, worker0, worker1, ...)")
    return "chief" if "chief" in os.environ["KERASTUNER_TUNER_ID"] else "worker"


def check_flags():
    """Everything that can be checked before TensorFlow is imported."""
    if FLAGS.oracle not in ORACLES:
        raise UsageError(f"--oracle={FLAGS.oracle!r}: use one of {', '.join(ORACLES)}")
    options.check_positive(max_trials=FLAGS.max_trials, tune_epochs=FLAGS.tune_epochs,
                           batch_size=FLAGS.batch_size, train_lr=FLAGS.train_lr,
                           tune_arch_lr=FLAGS.tune_arch_lr,
                           tune_samples_per_update=FLAGS.tune_samples_per_update)
    if FLAGS.tune_steps_per_epoch < 0:
        raise UsageError(f"--tune_steps_per_epoch must not be negative, got "
                         f"{FLAGS.tune_steps_per_epoch}")
    if not 0 <= FLAGS.reinforce_baseline_decay < 1:
        raise UsageError(f"--reinforce_baseline_decay must be in [0, 1), got "
                         f"{FLAGS.reinforce_baseline_decay}")
    if FLAGS.tune_init_from is not None:
        if FLAGS.oracle != "proxyless":
            raise UsageError(f"--tune_init_from needs --oracle=proxyless (got --oracle="
                             f"{FLAGS.oracle})")
        if not os.path.isfile(FLAGS.tune_init_from):
            raise UsageError(f"--tune_init_from={FLAGS.tune_init_from!r} does not exist")
    if FLAGS.tune_supernet is not None and not os.path.isdir(FLAGS.tune_supernet):
        raise UsageError(f"--tune_supernet={FLAGS.tune_supernet!r} is not a search's output dir")
    if FLAGS.latency_source not in ("table", "measure"):
        raise UsageError(f"--latency_source={FLAGS.latency_source!r}: use table or measure")
    if not FLAGS.latency_table:
        if FLAGS.target_ratio is not None:
            raise UsageError("--target_ratio needs --latency_table")
        if FLAGS.target_ms is not None and FLAGS.latency_source == "table":
            raise UsageError("--target_ms needs --latency_table, or --latency_source=measure")
    project = FLAGS.tune_project or FLAGS.oracle
    if not project or os.sep in project or project in (".", ".."):
        raise UsageError(f"--tune_project={project!r} must be a plain folder name")
    return project


def train_config():
    from proxyless_tf.train import TrainConfig
    return TrainConfig(epochs=FLAGS.tune_epochs, batch_size=FLAGS.batch_size,
                       steps_per_epoch=FLAGS.tune_steps_per_epoch or FLAGS.steps_per_epoch,
                       lr=FLAGS.train_lr, momentum=FLAGS.momentum, weight_decay=FLAGS.weight_decay,
                       label_smoothing=FLAGS.label_smoothing, seed=FLAGS.seed, verbose=0)


def latency_sources(space):
    """(oracle_latency, trial_latency, target_ms, description): how latency reaches the oracle.
    With a table the oracle predicts it itself (and workers report the same number); with
    --latency_source=measure every worker times its trial's network."""
    from proxyless_tf import latency
    from proxyless_tf.flag_configs import latency_config_from_flags
    config = latency_config_from_flags()
    table = target = None
    # Not latency.objective_from_config: its LatencyObjective also checks --latency_loss,
    # which tuning does not use.
    if config.table:  # a path, or auto: the table built on this machine (built now if missing)
        table = latency.load_table(space, config.meter(), config, build_missing=False)
        table.space_costs(space)  # every candidate of every block must be in the table
        target = latency.resolve_target(table, space, config.target_ms, config.target_ratio,
                                        config.target_reference)
    if config.source == "measure":
        meter = config.meter()
        meter.check_available()
        target = target if table is not None else config.target_ms

        def measured(arch):
            return float(meter.measure_arch(arch)["median"])
        return None, measured, target, f"measured ({meter.runtime}, {meter.threads} thread(s))"
    if table is not None:
        return table.predict, table.predict, target, f"table {table.source}"
    return None, None, None, None


def make_oracle(space, latency, reward):
    from proxyless_tf import tuner
    common = dict(space=space, latency=latency, reward=reward, max_trials=FLAGS.max_trials)
    if FLAGS.oracle == "proxyless":
        init = None
        if FLAGS.tune_init_from:
            source = f"--tune_init_from={FLAGS.tune_init_from}"
            init = tuner.probabilities_from_architecture(
                space, architecture.Architecture.load(FLAGS.tune_init_from), source)
        return tuner.ProxylessOracle(
            lr=FLAGS.tune_arch_lr, beta1=FLAGS.arch_beta1, beta2=FLAGS.arch_beta2,
            baseline_decay=FLAGS.reinforce_baseline_decay,
            samples_per_update=FLAGS.tune_samples_per_update, init_probs=init, seed=FLAGS.seed,
            **common)
    import keras_tuner
    objective = keras_tuner.Objective(tuner.OBJECTIVE, "max")
    hps = tuner.hyperparameters(space)
    # keras-tuner reads a seed of 0 as "no seed": its oracles get --seed + 1.
    oracle_class = tuner.RandomOracle if FLAGS.oracle == "random" else tuner.BayesianOracle
    return oracle_class(objective=objective, hyperparameters=hps, seed=FLAGS.seed + 1,
                        allow_new_entries=False, tune_new_entries=False, **common)


def main(argv):
    if len(argv) > 1:
        raise UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.set_verbosity(logging.WARNING)
    project = check_flags()
    role = distributed_role()
    space = options.space_from_flags()  # validates the space flags before loading data
    output_dir = io_utils.ensure_writable_dir(FLAGS.output_dir)

    from proxyless_tf import data, tuner
    splits = data.load(FLAGS.dataset, space.input_size, FLAGS.batch_size, FLAGS.data_dir,
                       FLAGS.download, FLAGS.valid_fraction, FLAGS.seed, FLAGS.max_train_examples)
    space = options.space_from_flags(num_classes=splits.num_classes)
    oracle_latency, trial_latency, target, latency_from = latency_sources(space)
    reward = tuner.RewardSpec(FLAGS.reinforce_reward, FLAGS.reinforce_w, FLAGS.reinforce_beta,
                              target)
    oracle = make_oracle(space, oracle_latency, reward)
    if role == "chief":
        evaluate = None  # the chief only runs the oracle
    elif FLAGS.tune_supernet:
        evaluate = tuner.SupernetEvaluator(space, FLAGS.tune_supernet, splits, FLAGS.batch_size)
    else:
        if splits.valid_size < FLAGS.batch_size:
            raise UsageError(f"the validation split has {splits.valid_size} images, fewer than "
                             f"--batch_size={FLAGS.batch_size}: raise --valid_fraction or "
                             "--max_train_examples, or lower --batch_size")
        evaluate = tuner.TrainEvaluator(splits, train_config(), FLAGS.dataset, FLAGS.data_dir)
    hypermodel = tuner.ProxylessHyperModel(space, FLAGS.train_lr)
    tuning = tuner.ProxylessTuner(
        oracle, hypermodel, evaluate, trial_latency, directory=output_dir, project_name=project,
        overwrite=FLAGS.tune_overwrite and role != "worker", announce=role == "worker")
    if role != "worker":
        io_utils.write_text(os.path.join(output_dir, "flags.txt"), FLAGS.flags_into_string())
        how = f"supernet weights of {FLAGS.tune_supernet}" if FLAGS.tune_supernet else \
            f"{FLAGS.tune_epochs} training epoch(s) per trial"
        print(f"tuning {len(space.searchable_positions())} blocks with --oracle={FLAGS.oracle}, "
              f"{FLAGS.max_trials} trials, {how}; {reward.describe()}"
              f"{f'; latency from {latency_from}' if latency_from else ''}", flush=True)
        if role == "chief":
            print(f"chief: serving the oracle on {os.environ['KERASTUNER_ORACLE_IP']}:"
                  f"{os.environ['KERASTUNER_ORACLE_PORT']}", flush=True)
    started = time.time()
    try:
        tuning.search()
    except RuntimeError as e:  # keras-tuner gives up after consecutive failed trials
        print(f"error: tuning stopped: {str(e).splitlines()[0]}", file=sys.stderr)
        sys.exit(1)
    if role == "worker":
        print(f"{os.environ['KERASTUNER_TUNER_ID']}: no more trials from the chief after "
              f"{time.time() - started:.1f}s", flush=True)
        return
    write_results(tuning, space, output_dir, latency_from, time.time() - started)


def write_results(tuning, space, output_dir, latency_from, seconds):
    from proxyless_tf import tuner
    oracle = tuning.oracle
    completed = [t for t in oracle.trials.values() if t.status == "COMPLETED"]
    if not completed:
        print(f"error: no trial completed; see {tuning.project_dir}/trial_*/trial.json",
              file=sys.stderr)
        sys.exit(1)
    ranked = sorted(completed, key=lambda t: t.score, reverse=True)
    best = ranked[0]
    accuracy, latency_ms, reward = oracle.trial_summary(best)
    if math.isnan(latency_ms):  # no table and nothing measured per trial: measure the winner
        from proxyless_tf.flag_configs import meter_from_flags
        meter = meter_from_flags()
        meter.check_available()
        latency_ms = float(meter.measure_arch(oracle.trial_architecture(best))["median"])
        latency_from = f"measured once at the end ({meter.runtime}, {meter.threads} thread(s))"
    probs = None
    if isinstance(oracle, tuner.ProxylessOracle):
        probs = [dict(zip(p.candidates, map(float, row)))
                 for p, row in zip(space.searchable_positions(), oracle.probabilities())]
    arch = tuner.architecture_from_values(space, best.hyperparameters.values,
                                          name=f"tune_{FLAGS.oracle}", probs=probs)
    record = {"oracle": FLAGS.oracle, "trial": best.trial_id, tuner.OBJECTIVE: accuracy,
              "latency_ms": latency_ms, "latency_from": latency_from, "reward": reward,
              "reward_form": oracle.reward_spec.describe(),
              "target_ms": oracle.reward_spec.target_ms, "trials_completed": len(completed),
              "project_dir": tuning.project_dir}
    data = arch.to_json()
    data["tune"] = record
    io_utils.write_json(os.path.join(output_dir, "arch.json"), data)

    results = {"best": record, "seconds_this_run": round(seconds, 1), "trials": []}
    for t in ranked + [t for t in oracle.trials.values() if t.status != "COMPLETED"]:
        row = {"trial": t.trial_id, "status": t.status,
               "ops": tuner.searchable_ops(space, t.hyperparameters.values)}
        if t.status == "COMPLETED":
            acc, lat, rew = oracle.trial_summary(t)
            row.update({tuner.OBJECTIVE: acc, "latency_ms": None if math.isnan(lat) else lat,
                        "reward": rew})
        results["trials"].append(row)
    if isinstance(oracle, tuner.ProxylessOracle):
        results["proxyless"] = {"updates": oracle.updates,
                                "probabilities": oracle.probabilities_by_block(),
                                "derived_ops": oracle.derived_architecture().ops,
                                "update_log": oracle.update_log}
    io_utils.write_json(os.path.join(output_dir, "tune_results.json"), results)
    lat = f"{latency_ms:.4g} ms" if not math.isnan(latency_ms) else "unknown"
    ops = tuner.searchable_ops(space, best.hyperparameters.values)
    print(f"best: trial {best.trial_id} [{' '.join(ops)}] {tuner.OBJECTIVE} {accuracy:.4f}, "
          f"latency {lat}, reward {reward:.4f} ({len(completed)} trials completed)")
    print(f"wrote {os.path.join(output_dir, 'arch.json')} and "
          f"{os.path.join(output_dir, 'tune_results.json')}")


if __name__ == "__main__":
    app.run(exit_on_usage_error(main))
