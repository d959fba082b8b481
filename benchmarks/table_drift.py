"""How a latency table's parts moved between two machines, group by group (issue 15).

    python -m benchmarks.table_drift proxyless_tf/tables/mobile_32.json runs/latency/here.json

compares the entries both tables have, in the groups the check's refit scales separately
(`Part.group`: the blocks with an expansion by depthwise kernel, `k3`, `k5`, `k7`; the rest
`fixed`, here split by part kind): for each group the number of entries, the median and range
of (second / first) and each table's sum over the group. A refit with one scale fits when the
groups' medians agree; the check fits one scale per group. The table built here is
`python -m proxyless_tf.latency build --flagfile=flags/mobile.cfg --output=runs/latency/here.json`
(about 80 s on 2 cores). The last line printed is a JSON summary.
"""

import argparse
import json
import re

import numpy as np

from benchmarks.commands import main_of
from proxyless_tf.errors import UsageError
from proxyless_tf.latency.table import LatencyTable
from proxyless_tf.quantize import kind

BLOCK = re.compile(r"expand:(\d+)-kernel:(\d+)")


def group_of(key):
    """The refit's group of a table key (`Part.group`), the fixed parts named by kind."""
    match = BLOCK.search(key)
    if match and int(match.group(1)) > 1:
        return f"k{match.group(2)}"
    return f"fixed: {key.split('-')[0]}"


def drift(first, second):
    groups = {}
    for key in sorted(set(first.entries) & set(second.entries)):
        groups.setdefault(group_of(key), []).append((first.ms(key), second.ms(key)))
    rows = {}
    for group, pairs in sorted(groups.items()):
        a, b = np.array(pairs).T
        ratio = b / a
        rows[group] = {"n": len(pairs), "median_ratio": round(float(np.median(ratio)), 3),
                       "min_ratio": round(float(ratio.min()), 3),
                       "max_ratio": round(float(ratio.max()), 3),
                       "first_ms": round(float(a.sum()), 3), "second_ms": round(float(b.sum()), 3)}
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("first", help="a latency table (e.g. the shipped one)")
    parser.add_argument("second", help="a latency table of the same space from another machine, "
                                       "timed in the same TFLite format")
    args = parser.parse_args(argv)
    # a missing or unreadable table is LatencyTable.load's one-line UsageError (main_of)
    first, second = LatencyTable.load(args.first), LatencyTable.load(args.second)
    if first.quantization != second.quantization:  # the format's speed-up, not the drift
        raise UsageError(f"{args.first} holds {kind(first.quantization)} latencies, "
                         f"{args.second} {kind(second.quantization)} ones: compare two tables "
                         f"of one TFLite format (`python -m proxyless_tf.latency build "
                         f"--latency_quantization=...`)")
    rows = drift(first, second)
    if not rows:
        parser.error("the two tables have no entry in common (tables of different spaces?)")
    print(f"{'group':22s} {'n':>4s} {'median':>7s} {'range':>13s} {'sum 1st':>8s} {'sum 2nd':>8s}")
    for group, r in rows.items():
        print(f"{group:22s} {r['n']:4d} {r['median_ratio']:7.3f} "
              f"{r['min_ratio']:6.3f}-{r['max_ratio']:<6.3f} {r['first_ms']:8.3f} "
              f"{r['second_ms']:8.3f}")
    print(json.dumps({"first": args.first, "second": args.second, "groups": rows}))


if __name__ == "__main__":
    main_of(main)()
