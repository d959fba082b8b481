"""tf.distribute for the search and the retraining (`--strategy`).

* ``default``       one device (TensorFlow's default strategy; what runs without the flag).
* ``mirrored``      MirroredStrategy over this host's GPUs (or, without GPUs, over the logical
                    CPU devices `--logical_cpus` makes: how the tests run it on a laptop).
* ``multi_worker``  MultiWorkerMirroredStrategy over the machines TF_CONFIG lists.
* ``tpu``           TPUStrategy on the TPU `--tpu` names ("" on a TPU VM: the local one).

Batch sizes are global: `--batch_size` is split across the replicas. The chief (the only
worker without TF_CONFIG, else task `chief`, else `worker` 0) writes the outputs; the other
workers write what they must (checkpoints) to a scratch folder that is deleted afterwards, and
read the chief's checkpoints to resume, so on several machines OUTPUT_DIR must be storage every
worker sees (a shared file system: outputs use Python's file I/O).
"""

import dataclasses
import json
import os
import shutil
import tempfile

from proxyless_tf.errors import UsageError

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")
SAMPLINGS = ("shared", "per_replica")


@dataclasses.dataclass(frozen=True)
class DistributeConfig:
    """Which strategy runs a search or a training (defaults: the --strategy, --tpu and
    --logical_cpus flags'); how a search samples paths under it is SearchConfig.path_sampling."""

    strategy: str = "default"    # STRATEGIES
    tpu: str = ""                # tpu: its name or grpc:// address ("" on a TPU VM)
    logical_cpus: int = 0        # split the host CPU into this many devices first (0: none)


def split_cpu(count):
    """Splits the host CPU into `count` logical devices. Must run before TensorFlow initialises
    its devices (before the first op)."""
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu)
    if current is not None and len(current) == count:
        return
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)])
    except RuntimeError:
        raise UsageError(f"--logical_cpus={count}: TensorFlow has already initialised its "
                         f"devices; the split must come first") from None


def make_strategy(name, tpu="", logical_cpus=0):
    """The tf.distribute strategy `name` (one of STRATEGIES)."""
    import tensorflow as tf
    if name not in STRATEGIES:
        raise UsageError(f"--strategy={name!r}: use one of {', '.join(STRATEGIES)}")
    if logical_cpus:
        split_cpu(logical_cpus)
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = None
        if not tf.config.list_physical_devices("GPU"):
            devices = [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    if name == "multi_worker":
        config = os.environ.get("TF_CONFIG")
        if config:
            try:
                json.loads(config)
            except ValueError as e:
                raise UsageError(f"TF_CONFIG is not valid JSON: {e}") from None
        return tf.distribute.MultiWorkerMirroredStrategy()
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, tf.errors.OpError) as e:
        raise UsageError(f"--strategy=tpu: no TPU found (--tpu={tpu!r}): "
                         f"{str(e).splitlines()[0]}") from None
    return tf.distribute.TPUStrategy(resolver)


def strategy_from_config(config):
    """The strategy of a DistributeConfig."""
    if config.logical_cpus < 0:
        raise UsageError(f"--logical_cpus must not be negative, got {config.logical_cpus}")
    return make_strategy(config.strategy, config.tpu, config.logical_cpus)


def is_default(strategy):
    """True for TensorFlow's default (no-op) strategy."""
    return type(strategy).__name__ == "_DefaultDistributionStrategy"


def task(strategy):
    """(task_type, task_id) of this process, (None, 0) outside a multi-worker cluster."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return None, 0
    return resolver.task_type, int(resolver.task_id or 0)


def num_workers(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return 1
    jobs = resolver.cluster_spec().as_dict()
    return sum(len(jobs.get(job, ())) for job in ("chief", "worker")) or 1


def is_chief(strategy):
    import tensorflow as tf
    if isinstance(strategy, tf.distribute.TPUStrategy):
        return True
    task_type, task_id = task(strategy)
    if task_type in (None, "chief"):
        return True
    jobs = strategy.cluster_resolver.cluster_spec().as_dict()
    return task_type == "worker" and task_id == 0 and "chief" not in jobs


def scratch_dir(output_dir, strategy):
    """Where this worker writes: `output_dir` on the chief, a fresh temporary folder on the
    other workers (remove it with `cleanup`)."""
    if is_chief(strategy):
        return output_dir
    task_type, task_id = task(strategy)
    return tempfile.mkdtemp(prefix=f"proxyless_{task_type}{task_id}_")


def cleanup(path, output_dir):
    if path != output_dir:
        shutil.rmtree(path, ignore_errors=True)


def check_global_batch(batch_size, strategy, flag="--batch_size"):
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise UsageError(f"{flag}={batch_size} is the global batch and must divide evenly "
                         f"over the {replicas} replicas of the strategy")


def distribute_dataset(strategy, dataset):
    """Per-replica batches of a globally batched dataset (the dataset itself on one device)."""
    if is_default(strategy):
        return dataset
    return strategy.experimental_distribute_dataset(dataset)


def check_workers_agree(strategy, value, what):
    """Raises on every worker if `value` (a number) differs between the workers, e.g. the epoch
    a run resumes from when a worker does not see the chief's checkpoints."""
    import tensorflow as tf
    if num_workers(strategy) < 2:
        return
    x = tf.constant(float(value))

    def replica():
        ctx = tf.distribute.get_replica_context()
        return ctx.all_reduce(tf.distribute.ReduceOp.MEAN, tf.stack([x, x * x]))

    moments = tf.function(lambda: strategy.run(replica))()
    moments = strategy.experimental_local_results(moments)[0].numpy()
    if moments[1] - moments[0] ** 2 > 1e-6 * max(1.0, moments[1]):
        raise RuntimeError(f"the workers disagree on {what} (this worker: {value}); do all of "
                           f"them see the same OUTPUT_DIR?")
