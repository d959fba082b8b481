"""benchmarks.cifar10_quality's steps: the latency model (the table, checked against this machine,
and the target T), the searches, the random networks near T and the baseline, their measured
latencies and their retraining; each step skips what an earlier run of the same output folder
finished. The library's commands run through benchmarks.commands (their output in logs)."""

import dataclasses
import os

from benchmarks.cifar10_quality_settings import BUILD, FLAGS, building_table, seed_network_epochs
from benchmarks.commands import run_logged
from proxyless_tf import io_utils
from proxyless_tf.errors import UsageError


# --- networks -------------------------------------------------------------------------------
@dataclasses.dataclass
class Net:
    name: str
    kind: str   # searched, random or baseline
    arch: object
    search_seed: int = None  # searched networks: the seed of their search

    def dir(self, out):
        return os.path.join(out, "nets", self.name)


def searched_name(seed):
    return f"searched_s{seed}"


def searchable_ops(arch):
    return [b.op for b in arch.blocks if b.searchable]


def size_of(arch):
    """(trainable parameters, MACs) of the standalone network."""
    import keras
    from proxyless_tf import blocks, train
    model = blocks.build_network(train.keras_safe(arch))
    result = blocks.count_params(model), blocks.count_macs(model)
    keras.backend.clear_session()
    return result


def sample_near_target(space, table, target_ms, count, tolerance=0.05, seed=0,
                       batch=256, max_tries=200000):
    """`count` distinct random architectures of `space` (uniform op per searchable block, as
    latency.random_archs) whose predicted latency is within +-tolerance of target_ms, by
    rejection sampling. Deterministic for a seed, and a larger count extends a smaller one."""
    import numpy as np
    from proxyless_tf import architecture, latency
    rng = np.random.default_rng(seed)
    found, seen, tried = [], set(), 0
    while len(found) < count:
        if tried >= max_tries:
            lo, hi = latency.LatencyObjective(table, space, target_ms, "abs").range_ms()
            raise UsageError(f"only {len(found)} of {max_tries} random architectures are within "
                             f"{100 * tolerance:g}% of {target_ms:.4g} ms (space range "
                             f"{lo:.4g}-{hi:.4g} ms): choose another target")
        for arch in latency.random_archs(space, batch, seed=int(rng.integers(2 ** 31))):
            tried += 1
            ops = searchable_ops(arch)
            if tuple(ops) in seen or abs(table.predict(arch) / target_ms - 1) > tolerance:
                continue
            seen.add(tuple(ops))
            found.append(architecture.from_space(space, ops, name=f"random{len(found) + 1}"))
            if len(found) == count:
                break
    return found


# --- steps ----------------------------------------------------------------------------------
def build_table_here(space, out, meter, steps):
    """--latency_table=build: OUTPUT_DIR/latency_table.json built (or completed) with the
    library; an interrupted build resumes."""
    from proxyless_tf import latency
    path = os.path.join(out, "latency_table.json")
    steps.say(f"latency table {path} ({FLAGS.latency_rounds} round(s), reusing entries "
              "already measured)")
    table, measured, reused = latency.build_table(
        space, meter, path, references=(), rounds=FLAGS.latency_rounds,
        calibration=FLAGS.latency_calibrate)
    steps.finish("table")
    steps.say(f"latency table: {measured} parts measured, {reused} reused, calibration "
              f"factor {table.factor:.4f}")
    return latency.LatencyTable(table.entries, table.settings, path, FLAGS.latency_stat)


def target_flags():
    """(--target_ms, --target_ratio) as meant: the full benchmark's default ratio gives way to
    a --target_ms given alone; both given: the later one (as a search reads them)."""
    from proxyless_tf import flag_configs
    if FLAGS.target_ms is not None and not FLAGS["target_ratio"].present:
        return FLAGS.target_ms, None
    return flag_configs.target_flags()


def latency_spec():
    """The flags that decide the searches' table and T (a rerun must give the same)."""
    target_ms, ratio = target_flags()
    return {"latency_table": FLAGS.latency_table or BUILD, "latency_check": FLAGS.latency_check,
            "latency_stat": FLAGS.latency_stat,
            "latency_quantization": FLAGS.latency_quantization,
            "target_ms": target_ms, "target_ratio": ratio,
            "target_reference": FLAGS.target_reference if ratio is not None else None}


def latency_model(space, out, meter, steps):
    """(table, its path, T): what every search optimises against and the random networks are
    sampled with. The first run takes --latency_table (built into OUTPUT_DIR with
    --latency_table=build), checks it against this machine and refits it when it is off
    (--latency_check: the library's check, as a search would run it; the reference of a ratio
    target is timed with it and T refers to its measured latency), and saves the table as
    OUTPUT_DIR/search_table.json and T in target.json. The searches get that table with
    --nolatency_check, so that they and the random sample share one table and one T (a check
    in each search could refit differently and move T's meaning). Reruns reuse both; other
    latency or target flags are refused."""
    from proxyless_tf import flag_configs, latency
    table_path = os.path.join(out, "search_table.json")
    target_path = os.path.join(out, "target.json")
    spec = latency_spec()
    if os.path.exists(target_path) and os.path.exists(table_path):
        saved = io_utils.read_json(target_path, what="target file")
        # runs from before --latency_quantization was recorded were float32
        flags = {"latency_quantization": "none", **(saved.get("flags") or {})}
        changed = [k for k in spec if flags.get(k) != spec[k]]
        if changed:
            raise UsageError(f"{out} was run with other latency flags (--{changed[0]}: "
                             f"{flags.get(changed[0])!r}, now "
                             f"{spec[changed[0]]!r}); use another --output_dir or the same flags")
        steps.say(f"latency table {table_path} and T = {saved['target_ms']:.4f} ms: from the "
                  "first run of this benchmark")
        return (latency.LatencyTable.load(table_path, stat=FLAGS.latency_stat,
                                          quantization=FLAGS.latency_quantization), table_path,
                float(saved["target_ms"]))
    target_ms, ratio = spec["target_ms"], spec["target_ratio"]
    reference_ms = None
    if building_table():
        table = build_table_here(space, out, meter, steps)
        print("latency check: skipped, the table was measured on this machine just now",
              flush=True)
    else:
        reference = latency.resolve_arch(FLAGS.target_reference, space, "--target_reference") \
            if ratio is not None else None
        if FLAGS.latency_check:
            steps.say(f"latency table {FLAGS.latency_table}: checking it against this machine "
                      "(--latency_check)")
        checked = latency.checked_table(space, flag_configs.latency_config_from_flags(), meter,
                                        reference=reference)
        steps.finish("check")
        table, reference_ms = checked.table, checked.reference_ms
    target = latency.resolve_target(table, space, target_ms, ratio, FLAGS.target_reference,
                                    reference_ms)
    lo, hi = latency.LatencyObjective(table, space, target, "abs").range_ms()
    if not lo < target < hi:
        raise UsageError(f"the target {target:.4g} ms is outside the space's range "
                         f"{lo:.4g}-{hi:.4g} ms (table {table.source})")
    source = table.source
    table.save(table_path)
    io_utils.write_json(target_path, {"target_ms": target, "flags": spec, "table_from": source,
                                      "reference_measured_ms": reference_ms})
    return (latency.LatencyTable.load(table_path, stat=FLAGS.latency_stat,
                                      quantization=FLAGS.latency_quantization), table_path, target)


def search_results(out, seed):
    """Search `seed`'s results.json (the supernet's last-epoch train accuracy, the derived
    network's test accuracy with the supernet's weights); {} when it has none."""
    path = os.path.join(out, f"search_seed{seed}", "results.json")
    return io_utils.read_json(path, what="search results") if os.path.exists(path) else {}


def run_search(seed, out, table_path, target, recipe, steps):
    """Search `seed` through its command line, into OUTPUT_DIR/search_seedS/;
    nets/searched_sS/arch.json marks it finished (the search itself resumes from its
    checkpoints when interrupted)."""
    from proxyless_tf import architecture
    name = searched_name(seed)
    net_dir = os.path.join(out, "nets", name)
    path = os.path.join(net_dir, "arch.json")
    if os.path.exists(path):
        steps.say(f"search seed {seed}: done before ({path})")
        return architecture.Architecture.load(path)
    search_dir = os.path.join(out, f"search_seed{seed}")
    os.makedirs(net_dir, exist_ok=True)
    args = [f"--flagfile={recipe}", f"--output_dir={search_dir}", f"--seed={seed}",
            f"--latency_table={table_path}", "--nolatency_check",  # checked once, above
            f"--latency_quantization={FLAGS.latency_quantization}",
            f"--latency_stat={FLAGS.latency_stat}", f"--target_ms={target!r}",
            f"--latency_loss={FLAGS.latency_loss}", f"--latency_beta={FLAGS.latency_beta}"]
    seed_epochs = seed_network_epochs()
    steps.say(f"search seed {seed} of {FLAGS.search_seeds}: {FLAGS.epochs} epochs ({seed_epochs} "
              f"seed network, {FLAGS.warmup_epochs - seed_epochs} random-path warm-up, "
              f"{FLAGS.epochs - FLAGS.warmup_epochs} search), target {target:.4f} ms, loss "
              f"{FLAGS.latency_loss}; log {search_dir}.log")
    run_logged("proxyless_tf.search", args, f"{search_dir}.log",
               lambda line: (line.startswith("epoch ") and "loss" in line)
               or line.startswith(("grew ", "supernet:", "derived architecture")))
    steps.finish(f"search {seed}")
    arch = architecture.Architecture.load(os.path.join(search_dir, "arch.json"))
    arch = dataclasses.replace(arch, name=name)
    arch.save(path)
    return arch


def sample_randoms(space, table, target, out, steps):
    """The random networks, sampled once and kept in nets/randomI/arch.json."""
    from proxyless_tf import architecture
    paths = [os.path.join(out, "nets", f"random{i + 1}", "arch.json")
             for i in range(FLAGS.random_count)]
    if all(os.path.exists(p) for p in paths):
        return [architecture.Architecture.load(p) for p in paths]
    archs = sample_near_target(space, table, target, FLAGS.random_count,
                               FLAGS.random_tolerance, seed=FLAGS.seed)
    for arch, path in zip(archs, paths):
        if os.path.exists(path) and architecture.Architecture.load(path).ops != arch.ops:
            raise UsageError(f"{path} is not the sample of this seed and target; use another "
                             "--output_dir")
        arch.save(path)
    steps.say(f"sampled {len(archs)} random architectures within "
              f"{100 * FLAGS.random_tolerance:g}% of {target:.4f} ms (seed {FLAGS.seed})")
    return archs


def baseline_arch(space, out):
    from proxyless_tf import architecture
    path = os.path.join(out, "nets", "baseline", "arch.json")
    arch = dataclasses.replace(architecture.resolve("all:k3e6", space), name="baseline")
    arch.save(path)
    return arch


def measure_latencies(nets, out, meter, stat, steps):
    """Each network still without nets/NAME/latency.json converted once and timed in
    --latency_rounds rounds, a pass over all of them each (as `latency validate` does), so that
    a change of the machine's load spreads over every network; the quietest round's median
    is kept (latency.combine), like the table's entries."""
    from proxyless_tf import latency
    todo = [n for n in nets if not os.path.exists(os.path.join(n.dir(out), "latency.json"))]
    if not todo:
        return
    steps.say(f"measuring {len(todo)} network(s) with LiteRT ({meter.threads} thread(s), "
              f"batch {meter.batch}, {FLAGS.latency_rounds} round(s) of {meter.runs} runs)")
    prepared = meter.prepare_all(meter.network(net.arch) for net in todo)
    timings = [[] for _ in todo]
    for _ in range(FLAGS.latency_rounds):
        for i, tflite in enumerate(prepared):
            timings[i].append(meter.time(tflite))
    for net, runs in zip(todo, timings):
        stats = latency.combine(runs)
        measured = stats["mean"] if stat == "mean" else stats["median"]
        io_utils.write_json(os.path.join(net.dir(out), "latency.json"),
                            {"measured_ms": measured, "stats": stats,
                             "meter": dict(meter.settings(), rounds=FLAGS.latency_rounds)})
    steps.finish("latency")


def retrain(net, seed, out, recipe, steps):
    """One network, one seed, through `python -m proxyless_tf.train` (it resumes from its own
    checkpoint when interrupted); nets/NAME/seedS/results.json marks it finished."""
    run_dir = os.path.join(net.dir(out), f"seed{seed}")
    results = os.path.join(run_dir, "results.json")
    if os.path.exists(results):
        return io_utils.read_json(results)
    steps.say(f"retraining {net.name} ({net.kind}), seed {seed}: {FLAGS.train_epochs} epochs")
    args = [f"--flagfile={recipe}", f"--arch={os.path.join(net.dir(out), 'arch.json')}",
            f"--train_output_dir={run_dir}", f"--seed={seed}"]
    run_logged("proxyless_tf.train", args, os.path.join(net.dir(out), f"train_seed{seed}.log"),
               lambda line: "val_accuracy" in line or line.startswith("test accuracy"))
    steps.finish(f"train {net.name} seed {seed}")
    return io_utils.read_json(results)


def measured_ms(net, out):
    return io_utils.read_json(os.path.join(net.dir(out), "latency.json"))["measured_ms"]


def table_parts_todo(space, out):
    from proxyless_tf import latency
    if not building_table():
        return 0
    path = os.path.join(out, "latency_table.json")
    have = latency.LatencyTable.load(path).entries if os.path.exists(path) else {}
    return sum(1 for p in latency.table_parts(space) if p.key not in have)
