"""The commands' flags (`options.py`) as the library's configs: the one place where the
--latency_*, --target_*, --reinforce_* and --strategy flags become LatencyConfig,
ReinforceConfig and DistributeConfig. The library takes configs and never reads flags; the
commands (search, train, tune, latency, export) and the benchmarks call these. Importing this
module does not load TensorFlow.
"""

from proxyless_tf import options
from proxyless_tf.distribute import DistributeConfig, strategy_from_config
from proxyless_tf.latency.config import LatencyConfig

FLAGS = options.FLAGS


def target_flags():
    """(--target_ms, --target_ratio) as the user meant them: when the command line sets both
    (a flagfile's ratio, then --target_ms), the later one; the earlier is dropped."""
    target_ms, target_ratio = FLAGS.target_ms, FLAGS.target_ratio
    if target_ms is not None and target_ratio is not None:
        last = options.set_last(("target_ms", "target_ratio"))
        target_ms = None if last == "target_ratio" else target_ms
        target_ratio = None if last == "target_ms" else target_ratio
    return target_ms, target_ratio


def latency_config_from_flags():
    """The LatencyConfig of the --latency_* and --target_* flags (the target as `target_flags`
    resolves it)."""
    target_ms, target_ratio = target_flags()
    return LatencyConfig(
        runtime=FLAGS.latency_runtime, threads=FLAGS.latency_threads, batch=FLAGS.latency_batch,
        warmup=FLAGS.latency_warmup, runs=FLAGS.latency_runs, clean=FLAGS.latency_clean,
        quiet=FLAGS.latency_quiet, quiet_timeout=FLAGS.latency_quiet_timeout,
        quantization=FLAGS.latency_quantization,
        table=FLAGS.latency_table, stat=FLAGS.latency_stat, cache_dir=FLAGS.latency_cache_dir,
        references=tuple(FLAGS.latency_references or ()), rounds=FLAGS.latency_rounds,
        calibrate=FLAGS.latency_calibrate, rebuild=FLAGS.latency_rebuild,
        check=FLAGS.latency_check, check_networks=FLAGS.latency_check_networks,
        recheck=FLAGS.latency_recheck, target_ms=target_ms, target_ratio=target_ratio,
        target_reference=FLAGS.target_reference, loss=FLAGS.latency_loss,
        lam=FLAGS.latency_lambda, a=FLAGS.latency_a, b=FLAGS.latency_b,
        beta=FLAGS.latency_beta, source=FLAGS.latency_source)


def meter_from_flags():
    """The Meter of the --latency_* flags."""
    return latency_config_from_flags().meter()


def objective_from_flags(space, check=None, meter=None):
    """The LatencyObjective the flags configure for `space` (None without --latency_table);
    `latency.objective_from_config` with the flags' LatencyConfig."""
    from proxyless_tf.latency.objective import objective_from_config
    return objective_from_config(space, latency_config_from_flags(), check=check, meter=meter)


def reinforce_config_from_flags():
    """The ReinforceConfig of the --reinforce_* flags, with the search's --arch_lr,
    --arch_beta1, --arch_beta2 and --seed."""
    from proxyless_tf.reinforce import ReinforceConfig  # here: it loads TensorFlow
    return ReinforceConfig(
        samples=FLAGS.reinforce_samples, reward=FLAGS.reinforce_reward, w=FLAGS.reinforce_w,
        beta=FLAGS.reinforce_beta, baseline_decay=FLAGS.reinforce_baseline_decay,
        lr=FLAGS.arch_lr, beta1=FLAGS.arch_beta1, beta2=FLAGS.arch_beta2, seed=FLAGS.seed)


def distribute_config_from_flags():
    return DistributeConfig(strategy=FLAGS.strategy, tpu=FLAGS.tpu,
                            logical_cpus=FLAGS.logical_cpus)


def strategy_from_flags():
    """The tf.distribute strategy of --strategy, --tpu and --logical_cpus."""
    return strategy_from_config(distribute_config_from_flags())
