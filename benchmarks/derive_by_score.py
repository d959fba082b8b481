"""Would a derive by the supernet's score beat the most probable network? (issue 26)

The gradient search derives the most probable network within +-5% of its latency target. Its
final alphas often rank better networks just below that one. This benchmark takes, for every
gradient search of a `benchmarks.nas_bench_macro` output folder, the --top most probable
networks within the band (from the search's last history record), scores each with the
supernet's weights as the ranking step does (batch norm re-estimated on the same fixed
batches, accuracy on the held-out validation images), and looks up which network a pick of the
best-scored of the first K would derive, against the search's own, in true accuracy.

    python -m benchmarks.derive_by_score --run=runs/nas_bench_macro
    python -m benchmarks.derive_by_score --run=RUN --candidates_of=runs/nas_bench_macro

The second scores the recipe's searches' candidates with RUN's supernet: two supernets judged
on the same networks.

Scores are kept in RUN/derive_by_score.json (resumable; the ranking's sample, scored the same
way in RUN/inherited.json, is not scored again); the last line printed is the JSON. K=1 is the
most probable network, which is the search's own derived network (printed beside it). Each
search's line ends with the Kendall tau of the scores with the truth among its candidates: how
well the supernet orders the networks its derive chooses between.
"""

import argparse
import glob
import itertools
import json
import os
import sys

from benchmarks.commands import main_of

BAND = 0.05
PICKS = (1, 3, 5, 10)


def most_probable(probs, target_ms, latencies, top, band=BAND):
    """The `top` most probable distinct (canonical) networks whose predicted latency is within
    +-band of the target, most probable first; every network of the space enumerated."""
    import numpy as np
    from proxyless_tf import nas_bench_macro as nbm
    probs = np.asarray(probs)
    raw = np.array(list(itertools.product(range(probs.shape[1]), repeat=probs.shape[0])))
    keys = [nbm.canonical("".join(map(str, r))) for r in raw]
    log_p = np.log(np.maximum(probs[np.arange(len(probs)), raw], 1e-30)).sum(axis=1)
    inside = [i for i in np.argsort(-log_p) if abs(latencies[keys[i]] / target_ms - 1) <= band]
    return list(dict.fromkeys(keys[i] for i in inside))[:top]


def picks(candidates, scores, truth):
    """{K: (key, true accuracy) of the best-scored of the first K candidates}."""
    out = {}
    for k in PICKS:
        if k <= len(candidates):
            key = max(candidates[:k], key=scores.get)
            out[k] = (key, truth[key])
    return out


def searches_of(run):
    """{search name: its last history record} of every finished gradient search of `run`."""
    found = {}
    for folder in sorted(glob.glob(os.path.join(run, "searches", "grad_*"))):
        history = os.path.join(folder, "history.jsonl")
        if os.path.exists(os.path.join(folder, "results.json")) and os.path.exists(history):
            with open(history) as f:
                records = [json.loads(line) for line in f if line.strip()]
            if not records:
                raise SystemExit(f"{history}: empty")
            found[os.path.basename(folder)] = records[-1]
    if not found:
        raise SystemExit(f"--run={run}: no finished gradient search there "
                         "(searches/grad_*/results.json)")
    return found


def supernet_source(run, results):
    """The folder that holds the run's supernet and table: its --supernet_from, else itself."""
    source = results.get("supernet_from") or run
    if not os.path.exists(os.path.join(source, "supernet", "results.json")):
        raise SystemExit(f"--run={run}: no finished supernet at {source}/supernet (its "
                         "results.json names supernet_from; run from the same folder)")
    return source


def evaluation_settings(run, results):
    """The benchmark's settings of the run (its recipe's batch and split; --quick's batches)."""
    from benchmarks import nas_bench_macro as benchmark
    flags = [f"--output_dir={run}"] + (["--quick"] if results["quick"] else [])
    flags += [f"--{name}={results['recipe'][name]}"
              for name in ("batch_size", "max_train_examples")]
    return benchmark.parse_args(flags)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", default="runs/nas_bench_macro",
                        help="a finished benchmarks.nas_bench_macro output folder")
    parser.add_argument("--top", type=int, default=10, help="candidates per search")
    parser.add_argument("--candidates_of", default=None, metavar="RUN",
                        help="score the candidates of another output folder's searches with "
                             "--run's supernet: two supernets compared on the same networks")
    args = parser.parse_args(argv)
    if args.top < 1:
        sys.exit(f"--top={args.top}: at least 1")
    from benchmarks import nas_bench_macro as benchmark
    from proxyless_tf import io_utils, nas_bench_macro as nbm
    results, source = finished_run(args.run, "--run")
    candidates_of, candidates_source = (finished_run(args.candidates_of, "--candidates_of")
                                        if args.candidates_of else (results, source))
    bench = nbm.Benchmark()
    # the band is the candidates' search's, on its own table
    latencies = benchmark.predicted_latencies(os.path.join(candidates_source, "table.json"),
                                              bench)
    wanted = {name: most_probable(last["probs"], last["target_ms"], latencies, args.top)
              for name, last in searches_of(args.candidates_of or args.run).items()}
    # the ranking's sample was scored the same way: its scores count
    ranked = os.path.join(args.run, "inherited.json")
    known = io_utils.read_json(ranked, what="inherited scores") if os.path.exists(ranked) else {}
    keys = sorted({k for ks in wanted.values() for k in ks})
    scores = benchmark.inherited_accuracies(evaluation_settings(args.run, results), args.run,
                                            os.path.join(source, "supernet"), keys,
                                            kept_in="derive_by_score.json", known=known)
    truth = {k: bench.records[k].mean_acc for k in scores}
    report = {}
    for name, keys in wanted.items():
        chosen = picks(keys, scores, truth)
        derived_key = candidates_of["searches"].get(name, {}).get("key")
        tau = candidates_tau(keys, scores, truth)
        report[name] = {"derived": derived_key, "candidates": [
            [k, round(truth[k], 2), round(scores[k], 4)] for k in keys],
            "picks": {str(k): [key, round(acc, 2)] for k, (key, acc) in chosen.items()},
            "candidates_kendall_tau": tau}
        print(f"{name} derived {derived_key}  " + "  ".join(
            f"K={k}: {key} {acc:.2f}" for k, (key, acc) in chosen.items())
            + f"  tau among them {tau}")
    print(json.dumps({"run": args.run, "candidates_of": args.candidates_of or args.run,
                      "top": args.top, "searches": report}))


def finished_run(run, flag):
    """(results, folder of its supernet and table) of a finished benchmark output folder."""
    from proxyless_tf import io_utils
    results_path = os.path.join(run, "results.json")
    if not os.path.exists(results_path):
        sys.exit(f"{flag}={run}: no results.json there (run benchmarks.nas_bench_macro)")
    results = io_utils.read_json(results_path, what="benchmark results")
    return results, supernet_source(run, results)


def candidates_tau(keys, scores, truth):
    """Kendall tau of the supernet's scores with the truth among one search's candidates
    (networks of one latency band, the ones its derive chooses between); None for fewer than 3
    (or scores or truths all equal)."""
    from benchmarks.stats import correlations
    if len(keys) < 3:
        return None
    return correlations([scores[k] for k in keys], [truth[k] for k in keys], digits=3)[
        "kendall_tau"]


if __name__ == "__main__":
    main_of(main)()
