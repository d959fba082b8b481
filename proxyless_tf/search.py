"""`python -m proxyless_tf.search --flagfile=flags/mobile.cfg --output_dir=DIR`

Runs the ProxylessNAS search and leaves in DIR: arch.json (the derived architecture with its
per-block probabilities), checkpoints/ (rerun the same command to resume), tensorboard/,
history.jsonl (one line per epoch) and probabilities.png. `--export_tflite` then exports the
derived network with the supernet's weights to DIR/derived.KIND.tflite with its report
(measured LiteRT latency next to the table's prediction; see docs/export.md).

`--strategy=mirrored|multi_worker|tpu` runs it on several devices or machines (tf.distribute;
`--batch_size` is the global batch); see BUILD.md, "Scaling out".
"""

import time

STARTED = time.time()  # the job's clock starts before TensorFlow loads

if __name__ == "__main__":  # before anything loads TensorFlow: no native start-up lines
    from proxyless_tf import quiet
    quiet.start_tensorflow()

import math
import os

from absl import app, logging

from proxyless_tf import api, data, flag_configs, io_utils, options, reproducible
from proxyless_tf.errors import UsageError, exit_on_usage_error

FLAGS = options.FLAGS


def config_from_flags():
    """The SearchConfig of the flags, checked as the API checks it (proxyless_tf.api)."""
    from proxyless_tf.search_loop import SearchConfig
    if not 0 <= FLAGS.seed_fraction <= 1:
        raise UsageError(f"--seed_fraction must be between 0 and 1, got {FLAGS.seed_fraction}")
    seed_epochs = math.ceil(FLAGS.seed_fraction * max(FLAGS.warmup_epochs, 0) - 1e-9)
    if seed_epochs and FLAGS.weight_mode != "binary":
        if FLAGS["seed_fraction"].present:
            raise UsageError("--seed_fraction needs --weight_mode=binary (the full mode trains "
                             "every path at once)")
        seed_epochs = 0
    config = SearchConfig(
        epochs=FLAGS.epochs, warmup_epochs=FLAGS.warmup_epochs,
        steps_per_epoch=FLAGS.steps_per_epoch, weight_lr=FLAGS.weight_lr,
        search_weight_lr=FLAGS.search_weight_lr,
        weight_decay=FLAGS.weight_decay, momentum=FLAGS.momentum,
        label_smoothing=FLAGS.label_smoothing, arch_lr=FLAGS.arch_lr,
        arch_beta1=FLAGS.arch_beta1, arch_beta2=FLAGS.arch_beta2,
        arch_update_every=FLAGS.arch_update_every, arch_algo=FLAGS.arch_algo,
        weight_mode=FLAGS.weight_mode, seed=FLAGS.seed, path_sampling=FLAGS.path_sampling,
        seed_epochs=seed_epochs, seed_candidate=FLAGS.seed_candidate, derive=FLAGS.derive,
        skip_rate=FLAGS.skip_rate, zero_pairs=FLAGS.zero_pairs,
        checkpoint_seconds=FLAGS.checkpoint_seconds, search_seed=FLAGS.search_seed)
    api.check_search_config(config, prefix="--",
                            candidates=options.space_from_flags().candidates)
    options.check_positive(batch_size=FLAGS.batch_size)
    return config


def build_search(output_dir, verbose=1, strategy=None, clock=None):
    """Everything the flags describe, ready to run (also used by tests and benchmarks): the
    flags translated into `proxyless_tf.api.make_search`'s arguments. `strategy`: a
    tf.distribute strategy (default: TensorFlow's one-device strategy)."""
    import tensorflow as tf
    from proxyless_tf import distribute
    config = config_from_flags()
    space = options.space_from_flags()  # validates --candidates etc. before loading data
    check_searchable(space)
    reproducible.seed_everything(FLAGS.seed, FLAGS.deterministic)
    strategy = strategy or tf.distribute.get_strategy()
    distribute.check_global_batch(FLAGS.batch_size, strategy)
    if config.arch_algo == "reinforce" and FLAGS.latency_source == "measure" and \
            distribute.num_workers(strategy) > 1:
        raise UsageError("--latency_source=measure times networks on each worker, which would "
                         "disagree; use a latency table (--latency_source=table) with "
                         "--strategy=multi_worker")
    io_utils.ensure_writable_dir(output_dir)
    splits = data.load(FLAGS.dataset, space.input_size, FLAGS.batch_size, FLAGS.data_dir,
                       FLAGS.download, FLAGS.valid_fraction, FLAGS.seed, FLAGS.max_train_examples)
    space = options.space_from_flags(num_classes=splits.num_classes)
    if clock is not None:
        clock.lap("setup")
    # Outside the strategy's scope: the latency check converts networks of its own to time them.
    objective = latency_objective(space, strategy)
    if clock is not None:
        clock.lap("latency check")
    make_reinforce = None
    if config.arch_algo == "reinforce":
        from proxyless_tf import reinforce as reinforce_lib
        settings = (flag_configs.reinforce_config_from_flags(),
                    flag_configs.latency_config_from_flags())
        make_reinforce = lambda supernet, objective, evaluate: reinforce_lib.from_config(  # noqa
            supernet, objective, *settings, evaluate=evaluate)
    return api.make_search(space, splits, config, output_dir, objective,
                           arch_init_std=FLAGS.arch_init_std, reinforce=make_reinforce,
                           verbose=verbose, strategy=strategy)


def check_searchable(space):
    """A space with one candidate in every block is one network: there is nothing to search."""
    if not space.searchable_positions():
        raise UsageError(f"--candidates={','.join(space.candidates)} leaves no choice in "
                         f"any block: nothing to search; train that network with python -m "
                         f"proxyless_tf.train --arch=all:OP")


def latency_objective(space, strategy=None):
    """The latency objective of the flags, its table checked against this machine first
    (--latency_check). With several workers the check is off: each would time differently and
    refit the table its own way, and the workers must agree on the objective."""
    from proxyless_tf import distribute
    check = None
    if strategy is not None and distribute.num_workers(strategy) > 1 and FLAGS.latency_check \
            and FLAGS.latency_table:
        print("latency check: off with several workers (each would time differently); the "
              "table is used as it is", flush=True)
        check = False
    return flag_configs.objective_from_flags(space, check=check)


def main(argv):
    if len(argv) > 1:
        raise UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.set_verbosity(logging.WARNING)  # keep checkpoint chatter out of the console
    from proxyless_tf import distribute
    config_from_flags()  # bad flags fail before a multi-worker strategy waits for its peers
    check_searchable(options.space_from_flags())
    strategy = flag_configs.strategy_from_flags()  # before any other TensorFlow work
    output_dir = FLAGS.output_dir
    export_settings = None
    if FLAGS.export_tflite:
        from export import settings_from_flags
        export_settings = settings_from_flags()  # check the export flags before searching
    from proxyless_tf.search_outputs import PhaseClock
    clock = PhaseClock(STARTED)
    search = build_search(output_dir, strategy=strategy, clock=clock)
    search.epoch_callbacks.append(lambda _, record: clock.lap(record["phase"]))
    if search.chief:
        io_utils.write_text(os.path.join(output_dir, "flags.txt"), FLAGS.flags_into_string())
    if search.replicas > 1 or FLAGS.strategy != "default":
        print(f"strategy {FLAGS.strategy}: {search.replicas} replica(s), global batch "
              f"{FLAGS.batch_size}, path sampling {FLAGS.path_sampling}", flush=True)
    arch = search.run()
    if search.chief:
        report_release(clock, search)
    if distribute.num_workers(strategy) > 1:
        # The same on every worker when they stayed in sync (tests compare it).
        task_type, task_id = distribute.task(strategy)
        digest = alpha_digest(search.net)
        print(f"{task_type} {task_id}: alpha digest {digest}", flush=True)
    print(f"derived architecture: {' '.join(arch.ops)}")
    if search.chief:
        print(f"wrote {os.path.join(output_dir, 'arch.json')}")
        if export_settings is not None:
            export_derived(search, arch, export_settings)
            clock.lap("export")
        print(clock.line(), flush=True)
        clock.write(os.path.join(output_dir, "phases.json"))


def report_release(clock, search, quiet_s=5.0):
    """Times the step from the search's results to its return, where its input pipelines are
    released and tf.data's autotuner once made it pause (docs/history/default_job.md); a pause
    says so now."""
    clock.lap("results", until=search.results_at)
    released = clock.lap("release")
    if released > quiet_s:
        print(f"note: {released:.0f} s passed between the search's results and its return "
              "(releasing its input pipelines)", flush=True)


def export_derived(search, arch, settings):
    """The derived network with the supernet's weights (not retrained) as DIR/derived.KIND.tflite
    plus its report (proxyless_tf.api.export_derived): its measured LiteRT latency next to the
    search's target and its table's prediction, right after the search."""
    output = FLAGS.output or os.path.join(FLAGS.output_dir, f"derived.{settings.kind}.tflite")
    api.export_derived(search, arch, output, settings, dataset=FLAGS.dataset)


def alpha_digest(net):
    """A short fingerprint of the alphas (rounded to 1e-5)."""
    import hashlib
    import numpy as np
    values = np.concatenate([np.round(a.numpy().astype(np.float64), 5).ravel()
                             for a in net.alphas])
    return hashlib.sha1(values.tobytes()).hexdigest()[:12]


if __name__ == "__main__":
    app.run(exit_on_usage_error(main))
