"""Does the search find better networks at equal latency? A CIFAR-10 benchmark (issue 7).

On the 32x32 space, for the mobile target (TFLite run by LiteRT, 1 thread, batch 1):
  1. the latency table: --latency_table (the full benchmark's default: the shipped
     proxyless_tf/tables/mobile_32.json, measured for the flags/mobile.cfg space, which is this
     space; --latency_table=build builds one with the library into OUTPUT_DIR instead, ~7 min),
     checked against this machine and refitted to it when it is off by more than 5%
     (--latency_check, on by default: what a user's search does; measurements are cached in
     --latency_cache_dir). The table used from then on is saved as OUTPUT_DIR/search_table.json;
  2. the target T = --target_ratio x --target_reference (all:k3e6, the MobileNetV2-like network
     of the space) as measured by the check (the table's prediction without it), or
     --target_ms; kept in OUTPUT_DIR/target.json;
  3. --search_seeds searches (python -m proxyless_tf.search, seeds 0..N-1) with that table, T
     and the absolute latency loss: each trains a seed network first (--seed_fraction of the
     warm-up; every block at its --seed_candidate), grows it into every candidate, warms the
     supernet up on random paths, then searches;
  4. --random_count random architectures of the space whose predicted latency is within
     +-random_tolerance of T (rejection sampling on the table, seeded by --seed), the same for
     every search, and the baseline all:k3e6 (every block k3e6, nothing skipped) at its own
     latency;
  5. every network timed end to end with the same LiteRT meter, then retrained with ONE fixed
     recipe (python -m proxyless_tf.train; OUTPUT_DIR/recipe.cfg) for --seeds seeds and
     evaluated on the test split; each searched network is compared with the best random one.

Writes OUTPUT_DIR/results.json, results.md (the tables), latency_accuracy.png, nets/NAME/
(arch.json, latency.json, seedS/ = the train run; NAME is searched_sS for search seed S,
randomI, baseline), search_seedS/ and search_seedS.log (search S's own outputs: history,
results.json with the supernet's last-epoch train accuracy and the derived network's test
accuracy). Rerunning the same command skips whatever is finished (an interrupted run
continues; a larger --search_seeds or --seeds later adds only the new runs). The last line
printed is a JSON summary.

    python -m benchmarks.cifar10_quality                   # the full benchmark, 1 search seed
    python -m benchmarks.cifar10_quality --search_seeds=2  # two searches against the same nets
    python -m benchmarks.cifar10_quality --quick           # the same code path, tiny, minutes

Time (an estimate from the step costs in cifar10_quality_settings, not a timed run): about
80-90 minutes with --search_seeds=2 on the 2-core development VM (about 16 min per search, 7 min
per retraining), about 65 with one search seed; up to twice that under other jobs' load. The
estimate for the flags given is printed at the start; the progress bar's ETA rescales it as
steps finish.

This module is the runner (the steps in order, the console); the flags and the recipe are in
cifar10_quality_settings, the steps in cifar10_quality_steps, the results in
cifar10_quality_report.
"""

import json
import os
import time

if __name__ == "__main__":  # keep TensorFlow's C++ start-up chatter out of the console
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from benchmarks.cifar10_quality_report import short_ops, write_results  # noqa: E402
from benchmarks.cifar10_quality_settings import (  # noqa: E402
    CHECK_NETWORK_S, FLAGS, FULL_DEFAULTS, PART_S, PROCESS_START_S, apply_quick, building_table,
    check_flags, check_or_write_recipe, search_estimate_s, train_image_ms)
from benchmarks.cifar10_quality_steps import (  # noqa: E402
    Net, baseline_arch, latency_model, measure_latencies, measured_ms, retrain, run_search,
    sample_randoms, searchable_ops, searched_name, size_of, table_parts_todo)
from benchmarks.progress import Steps, elapsed  # noqa: E402
from benchmarks.reports import percent  # noqa: E402
from proxyless_tf import io_utils  # noqa: E402
from proxyless_tf.errors import UsageError  # noqa: E402


def report_searched(arch, table, target, steps):
    """Says at once whether the derived network is near T: if it is not, the hour of
    retraining compares it at another latency (the reading must say so)."""
    predicted = table.predict(arch)
    verdict = "within" if abs(predicted / target - 1) <= 0.10 else "OUTSIDE"
    steps.say(f"{arch.name} {short_ops(searchable_ops(arch))}: predicted {predicted:.4f} ms = "
              f"{predicted / target:.3f} T ({verdict} +-10% of T)")
    return predicted


def plan(steps, out, names, base_macs, table_todo, check_todo):
    """The estimate of every step still to do (the bar's total); steps a previous run finished
    are left out. The baseline's MACs stand in for every network's (it is rough anyway)."""
    done = lambda *parts: os.path.exists(os.path.join(out, "nets", *parts))
    images = FLAGS.max_train_examples or 45000
    test_images = min(10000, images) if FLAGS.max_train_examples else 10000
    if table_todo:
        steps.add("table", table_todo * PART_S * FLAGS.latency_rounds
                  + FLAGS.latency_calibrate * 5.0)
    if check_todo:  # the spread networks, the reference and a uniform network per kernel
        steps.add("check", (FLAGS.latency_check_networks + 4)
                  * (CHECK_NETWORK_S + FLAGS.latency_rounds))
    for seed in range(FLAGS.search_seeds):
        if not done(searched_name(seed), "arch.json"):
            steps.add(f"search {seed}", search_estimate_s(base_macs, test_images))
    if not all(done(name, "latency.json") for name in names):
        steps.add("latency", len(names) * (3.0 + FLAGS.latency_rounds))
    epoch_images = (FLAGS.train_steps_per_epoch * FLAGS.batch_size
                    if FLAGS.train_steps_per_epoch else images)
    seconds = PROCESS_START_S + train_image_ms(base_macs) / 1e3 * (FLAGS.train_epochs
                                                                   * epoch_images
                                                                   + test_images / 3)
    for name in names:
        for seed in range(FLAGS.seeds):
            if not done(name, f"seed{seed}", "results.json"):
                steps.add(f"train {name} seed {seed}", seconds)



class Stop(Exception):
    """--stop_after reached: carries what is known so far (printed as the last line)."""


def setup():
    """Flags checked, OUTPUT_DIR and its recipe, the meter, the estimate printed and the
    progress bar started."""
    from proxyless_tf import architecture, flag_configs
    if FLAGS.quick:
        apply_quick()
    space = check_flags()
    out = io_utils.ensure_writable_dir(FLAGS.output_dir)
    recipe = check_or_write_recipe(out)
    meter = flag_configs.meter_from_flags()
    meter.check_available()
    steps = Steps()
    base_macs = size_of(architecture.resolve("all:k3e6", space))[1]
    names = ([searched_name(s) for s in range(FLAGS.search_seeds)] + ["baseline"]
             + [f"random{i + 1}" for i in range(FLAGS.random_count)])
    check_todo = (FLAGS.latency_check and not building_table()
                  and not os.path.exists(os.path.join(out, "target.json")))
    plan(steps, out, names, base_macs, table_parts_todo(space, out), check_todo)
    left = (f"estimate {elapsed(steps.total_s())} for what is left (rough: dev-VM costs; the "
            "bar below counts estimated seconds, its ETA rescales them by the pace so far)"
            if steps.total_s() else "every step was done before: writing the results")
    steps.say(f"CIFAR-10 quality benchmark into {out}: {FLAGS.search_seeds} search(es) of "
              f"{FLAGS.epochs} epochs, {len(names)} networks x {FLAGS.seeds} seed(s), "
              f"{FLAGS.train_epochs} retraining epochs on {FLAGS.max_train_examples or 'all'} "
              f"images; {left}")
    steps.start_bar()
    return space, out, recipe, meter, steps


def networks(space, out, recipe, meter, steps, known):
    """Table, target, the searches, the random and baseline networks, their measured
    latencies. Returns (table, target, [Net]); raises Stop at --stop_after."""
    from proxyless_tf import latency
    table, table_path, target = latency_model(space, out, meter, steps)
    predicted = table.predict(latency.resolve_arch(FLAGS.target_reference, space))
    measured = io_utils.read_json(os.path.join(out, "target.json")).get("reference_measured_ms")
    steps.say(f"target T = {target:.4f} ms ({FLAGS.target_reference}: predicted {predicted:.4f} "
              f"ms by {table_path}" + (f", measured {measured:.4f} ms here by the check" if
                                       measured else "") + ")")
    known["target_ms"] = round(target, 4)
    if FLAGS.stop_after == "table":
        raise Stop()
    searched = []
    for seed in range(FLAGS.search_seeds):
        arch = run_search(seed, out, table_path, target, recipe, steps)
        known[f"{arch.name}_predicted_ms"] = round(report_searched(arch, table, target, steps), 4)
        searched.append(Net(arch.name, "searched", arch, search_seed=seed))
    if FLAGS.stop_after == "search":
        raise Stop()
    nets = searched + [Net("baseline", "baseline", baseline_arch(space, out))]
    nets += [Net(a.name, "random", a) for a in sample_randoms(space, table, target, out, steps)]
    measure_latencies(nets, out, meter, table.stat, steps)
    for net in nets:
        ms = measured_ms(net, out)
        steps.say(f"  {net.name:11s} predicted {table.predict(net.arch):.3f} ms, measured "
                  f"{ms:.3f} ms ({ms / target:.3f} T)")
        known[f"{net.name}_measured_ms"] = round(ms, 4)
    if FLAGS.stop_after == "latency":
        raise Stop()
    return table, target, nets


def main(argv):
    from absl import logging
    logging.set_verbosity(logging.WARNING)  # keep the TFLite converter's chatter off the console
    if len(argv) > 1:
        raise UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    started = time.time()
    space, out, recipe, meter, steps = setup()
    known = {"stopped_after": FLAGS.stop_after}
    try:
        table, target, nets = networks(space, out, recipe, meter, steps, known)
    except Stop:
        known["wall_s"] = round(time.time() - started, 1)
        print(json.dumps(known), flush=True)
        return
    runs = {net.name: [] for net in nets}
    for seed in range(FLAGS.seeds):  # every network once before any second seed
        for net in nets:
            runs[net.name].append(retrain(net, seed, out, recipe, steps))
    result = write_results(out, nets, table, target, runs, started)
    steps.say(f"wrote {out}/results.json, results.md, latency_accuracy.png")
    for s in result["searched"]:
        steps.say(f"  {s['name']}: retrained {100 * s['acc']:.2f}% (supernet train "
                  f"{percent(s['supernet_train_acc'])}%, derived {percent(s['derived_test_acc'])}"
                  f"%), measured {s['measured_ms']:.3f} ms; beats the best random network "
                  f"({result['best_random']}, {100 * result['random_acc_max']:.2f}%): "
                  f"{'yes' if s['beats_best_random'] else 'no'}")
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    from absl import app

    from proxyless_tf.errors import exit_on_usage_error
    for _name, _value in FULL_DEFAULTS.items():
        FLAGS.set_default(_name, _value)
    app.run(exit_on_usage_error(main))
