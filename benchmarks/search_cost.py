"""What does a search step cost compared with training one compact network?

Measures, at batch 64 on the 32x32 space with all 7 candidates, each case in its own process:
  (a) standalone: a train step of the sampled network alone (plain Keras SGD)
  (b) binary:     the search's weight step (one sampled path per block)
  (c) two-path:   the search's architecture step (two sampled paths per block)
  (d) full:       a weight step through every path (DARTS-style weighted sum)
For each, over steady-state steps (after model build, tracing and a warm-up step):
  - tensor peak: TensorFlow's allocator peak above its idle level (get_memory_info after
    reset_memory_stats), per step; the median over the steps is the working memory the step
    needs (the ratios use it), the largest is reported too;
  - RSS peak: VmHWM (reset through /proc/self/clear_refs) above the idle VmRSS. Reported too,
    but it under-reads: pages the warm-up step touched stay resident, so a steady step that
    reuses them barely raises the high-water mark;
  - the median step time. (b)-(d) run on a supernet whose alphas are peaked on the network (a)
trains, so the binary step computes exactly that network;
  - the first call: tracing the step, building its graph and running it once (what a search
    waits for before its first step).
Last line: JSON with the ratios to (a). The script sets the environment its cases need (the BFC
allocator, whose statistics the memory figures read) for the processes it starts.

    python -m benchmarks.search_cost            # the full 32x32 space (4x4x4x4x4x1 blocks)
    python -m benchmarks.search_cost --quick    # 3 stages (1,2,1 blocks), width 0.5: < 2 min
"""

import argparse
import json
import os
import subprocess
import sys
import time

from benchmarks import REPO

CASES = ("standalone", "binary", "two_path", "full")


def _status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0  # MiB
    raise RuntimeError(field)


def _reset_peak():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def run_case(case, quick, steps, batch):
    import numpy as np
    import keras
    import tensorflow as tf
    from proxyless_tf import blocks, data
    from proxyless_tf.search_loop import BilevelSearch, SearchConfig
    from proxyless_tf.search_space import small_input_space
    from proxyless_tf.supernet import Supernet

    if quick:  # three stages, one block with all 7 candidates: tracing dominates a quick run
        space = small_input_space(widths=(24, 40, 80), depths=(1, 2, 1), strides=(1, 2, 2),
                                  width_multiplier=0.5)
    else:
        space = small_input_space(depths=(4, 4, 4, 4, 4, 1), width_multiplier=1.0)
    splits = data.load("digits", 32, batch)
    net = Supernet(space)
    rng = np.random.RandomState(0)
    chosen = [rng.randint(len(m.candidates)) for m in net.mixed_ops]
    for m, k in zip(net.mixed_ops, chosen):  # peak every alpha on the sampled network
        m.alpha.assign(np.where(np.arange(len(m.candidates)) == k, 30.0, 0.0))
    batches = iter(splits.train)

    if case == "standalone":
        model = blocks.build_network(net.derive())
        opt = keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True)
        loss_fn = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)
        opt.build(model.trainable_variables)

        @tf.function
        def step(images, labels):
            with tf.GradientTape() as tape:
                loss = loss_fn(tf.one_hot(labels, 10), model(images, training=True))
            opt.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
            return loss
    else:
        config = SearchConfig(weight_mode="full" if case == "full" else "binary")
        search = BilevelSearch(net, splits, config, "/tmp/search_cost_unused", verbose=0)
        step = search.arch_step if case == "two_path" else search.weight_step

    inputs = [next(batches) for _ in range(steps + 2)]
    started = time.perf_counter()
    [t.numpy() for t in tf.nest.flatten(step(*inputs[0]))]  # trace + first call
    first_call = time.perf_counter() - started
    [t.numpy() for t in tf.nest.flatten(step(*inputs[1]))]  # warm-up
    idle = _status("VmRSS")
    tensors_idle = tf.config.experimental.get_memory_info("CPU:0")["current"]
    _reset_peak()
    times, tensor_peaks = [], []
    for images, labels in inputs[2:]:
        tf.config.experimental.reset_memory_stats("CPU:0")
        started = time.perf_counter()
        [t.numpy() for t in tf.nest.flatten(step(images, labels))]
        times.append(time.perf_counter() - started)
        tensor_peaks.append(tf.config.experimental.get_memory_info("CPU:0")["peak"] - tensors_idle)
    peak = _status("VmHWM") - idle
    # The median step's peak: with two inter-op threads the order in which ready ops run varies
    # from step to step, and with it the peak (by up to ~10% here); the median is what a step
    # needs, the largest is reported too.
    result = {"case": case, "tensor_peak_mib": round(float(np.median(tensor_peaks)) / 2**20, 1),
              "tensor_peak_max_mib": round(max(tensor_peaks) / 2**20, 1),
              "peak_mib": round(peak, 1), "idle_mib": round(idle, 1),
              "median_step_s": round(float(np.median(times)), 4),
              "first_call_s": round(first_call, 2)}
    if case == "binary":  # now let the sample change every step: no retrace allowed
        for m in net.mixed_ops:
            m.alpha.assign(tf.random.normal(m.alpha.shape))
        samples = set()
        for images, labels in inputs[:6]:
            samples.add(tuple(search.sample_paths().numpy()[:, 0]))
            search.weight_step(images, labels)
        result["distinct_samples"] = len(samples)
        result["retraces_after_warmup"] = search.traces["weight"] - 1
    print(json.dumps(result), flush=True)


def main():
    import numpy as np
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3,
                        help="processes per compared case (standalone, binary); medians kept")
    parser.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    steps = args.steps or (3 if args.quick else 15)
    if args.case:
        return run_case(args.case, args.quick, steps, args.batch)
    # Large allocations go straight to mmap and back to the OS when freed, so a step's working
    # memory shows as a peak above the idle baseline instead of staying in malloc's heap.
    # TensorFlow's CPU allocator keeps statistics (get_memory_info) only as the BFC allocator.
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", TF_CPP_MIN_LOG_LEVEL="3",
               TF_CPU_ALLOCATOR_USE_BFC="true", PYTHONPATH=REPO)
    def start(case):
        cmd = [sys.executable, "-m", "benchmarks.search_cost", f"--case={case}",
               f"--steps={steps}", f"--batch={args.batch}"] + (["--quick"] if args.quick else [])
        return subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def finish(case, process):
        stdout, stderr = process.communicate()
        lines = [l for l in stdout.splitlines() if l.startswith("{")]
        if process.returncode or not lines:
            sys.exit(f"case {case} failed:\n{stderr[-3000:]}")
        result = json.loads(lines[-1])
        print(f"  measured {case}: {result}", file=sys.stderr, flush=True)
        return result

    def median_of(runs):
        """Per figure, the median over processes (a process's figures vary by a few percent
        with how its threads happen to schedule the ops)."""
        merged = dict(runs[0])
        for key in ("tensor_peak_mib", "tensor_peak_max_mib", "peak_mib", "median_step_s",
                    "first_call_s"):
            merged[key] = float(np.median([r[key] for r in runs]))
        return merged

    results = {}
    # One process at a time: the step times and the first calls (tracing, graph building) are
    # compared, and two processes on 2 cores would slow each other down. The two compared cases
    # alternate, so that a change in the machine's load affects both alike.
    compared = {"standalone": [], "binary": []}
    for _ in range(max(1, args.repeats)):
        for case in compared:
            compared[case].append(finish(case, start(case)))
    results.update({case: median_of(runs) for case, runs in compared.items()})
    for case in ("two_path", "full"):
        results[case] = finish(case, start(case))
    a = results["standalone"]
    print(f"{'case':12s} {'tensor MiB':>10s} {'x (a)':>7s} {'RSS MiB':>8s} {'step ms':>9s} "
          f"{'x (a)':>7s} {'first call s':>13s}")
    for case in CASES:
        r = results[case]
        print(f"{case:12s} {r['tensor_peak_mib']:10.1f} "
              f"{r['tensor_peak_mib'] / a['tensor_peak_mib']:7.2f} {r['peak_mib']:8.1f} "
              f"{r['median_step_s'] * 1e3:9.1f} {r['median_step_s'] / a['median_step_s']:7.2f} "
              f"{r['first_call_s']:13.1f}")
    b = results["binary"]
    memory = lambda case: round(results[case]["tensor_peak_mib"] / a["tensor_peak_mib"], 3)
    first_call = lambda case: round(results[case]["first_call_s"] / a["first_call_s"], 2)
    print(json.dumps({
        "weight_step_memory_ratio": memory("binary"),
        "weight_step_time_ratio": round(b["median_step_s"] / a["median_step_s"], 3),
        "arch_step_memory_ratio": memory("two_path"),
        "full_mode_memory_ratio": memory("full"),
        "rss_weight_step_memory_ratio": round(b["peak_mib"] / a["peak_mib"], 3),
        "retraces_after_warmup": b["retraces_after_warmup"],
        "first_call_s": {case: results[case]["first_call_s"] for case in CASES},
        "first_call_ratio_binary": first_call("binary"),
        "first_call_ratio_two_path": first_call("two_path"),
        "batch": args.batch, "steps": steps, "repeats": args.repeats, "quick": args.quick}))


if __name__ == "__main__":
    main()
