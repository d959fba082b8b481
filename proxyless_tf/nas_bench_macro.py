"""NAS-Bench-Macro (Su et al., CVPR 2021): ground truth for a MobileNetV2-style macro space.

Every network of the space `--space=nas_bench_macro` (`search_space.nas_bench_macro_space`) was
trained from scratch on CIFAR-10 for 50 epochs with three seeds; the benchmark's JSON names each
by an 8-digit key, one digit per searchable block: 0 identity, 1 k3e3, 2 k5e6. This module maps
architectures to keys and back and answers what a searched network is worth against all of
them. The JSON is vendored under benchmarks/data/nas_bench_macro/ (Apache-2.0, LICENSE beside).

An identity in a block that is not the first of its stage skips the block, so moving it to the
stage's end computes the same network: the benchmark gives both keys one record, and
`canonical` is the key the module reports (3,969 distinct networks of 6,561 keys).
"""

import dataclasses
import json
import os

import numpy as np

from proxyless_tf import architecture, search_space
from proxyless_tf.errors import UsageError

DIGITS = ("identity", "k3e3", "k5e6")  # the op of each digit of a key
DEFAULT_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "benchmarks", "data", "nas_bench_macro",
                            "nas-bench-macro_cifar10.json")


def space(**overrides):
    return search_space.nas_bench_macro_space(**overrides)


STAGE_DEPTHS = search_space.nas_bench_macro_space().depths  # (2, 3, 3)


def canonical(key):
    """The key of the same network with every stage's skipped blocks at its end: within each
    stage the first block's digit, then the other blocks' non-identity digits in order, then
    the identities."""
    out, at = [], 0
    for depth in STAGE_DEPTHS:
        stage = key[at:at + depth]
        rest = [d for d in stage[1:] if d != "0"]
        out.append(stage[0] + "".join(rest) + "0" * (depth - 1 - len(rest)))
        at += depth
    return "".join(out)


def check_key(key, source="key"):
    blocks = sum(STAGE_DEPTHS)
    if len(key) != blocks or any(d not in "012" for d in key):
        raise UsageError(f"{source}={key!r}: a NAS-Bench-Macro key is {blocks} digits 0 "
                         f"(identity), 1 (k3e3) or 2 (k5e6)")
    return key


def arch_of(key, name=None, space_=None):
    """The Architecture a key stands for (as written: no reordering)."""
    check_key(key)
    return architecture.from_space(space_ or space(), [DIGITS[int(d)] for d in key],
                                   name=name or f"nbm_{key}")


def key_of(arch, canonical_form=True):
    """The key of an architecture of the space (its searchable blocks' ops), canonical unless
    asked otherwise. A network of another space is a UsageError."""
    ops = [b.op for b in arch.blocks if b.searchable]
    expected = space()
    if len(ops) != len(expected.searchable_positions()) or any(op not in DIGITS for op in ops) \
            or [(b.in_channels, b.out_channels, b.stride) for b in arch.blocks] != \
            [(p.in_channels, p.out_channels, p.stride) for p in expected.positions()]:
        raise UsageError(f"{arch.name}: not a network of NAS-Bench-Macro's space "
                         "(--space=nas_bench_macro)")
    key = "".join(str(DIGITS.index(op)) for op in ops)
    return canonical(key) if canonical_form else key


@dataclasses.dataclass(frozen=True)
class Record:
    key: str
    mean_acc: float
    std: float
    params: int
    flops: int


class Benchmark:
    """The benchmark's records by canonical key (one per distinct network)."""

    def __init__(self, path=DEFAULT_PATH):
        try:
            with open(path) as f:
                raw = json.load(f)
        except (OSError, ValueError) as e:
            raise UsageError(f"NAS-Bench-Macro file {path!r}: cannot read it ({e})") from None
        self.path = path
        self.records = {}
        for key, value in raw.items():
            self.records.setdefault(canonical(key), Record(
                canonical(key), float(value["mean_acc"]), float(value["std"]),
                int(value["params"]), int(value["flops"])))
        self.raw_keys = len(raw)

    def __len__(self):
        return len(self.records)

    def keys(self):
        return sorted(self.records)

    def record(self, arch_or_key):
        key = arch_or_key if isinstance(arch_or_key, str) else key_of(arch_or_key)
        return self.records[canonical(check_key(key))]


# --- what a network is worth among all of them --------------------------------------------------
def expected_best_of(accuracies, n):
    """The expected best accuracy of `n` networks drawn uniformly, with replacement, from
    `accuracies` (exact: the i-th smallest is the best with probability (i/m)^n - ((i-1)/m)^n)."""
    a = np.sort(np.asarray(accuracies, float))
    m = len(a)
    if m == 0:
        return float("nan")
    i = np.arange(1, m + 1)
    return float(np.sum(a * ((i / m) ** n - ((i - 1) / m) ** n)))


def standing(accuracy, latency, all_accuracies, all_latencies, band=0.05, draws=(5, 20)):
    """How a network of true `accuracy` and predicted `latency` stands among all networks
    (arrays over the benchmark's distinct networks): its percentile and regret among those no
    slower than it, and the expected best of `draws` random networks within +-band of its
    latency."""
    acc, lat = np.asarray(all_accuracies, float), np.asarray(all_latencies, float)
    no_slower = acc[lat <= latency * (1 + 1e-9)]
    near = acc[np.abs(lat / latency - 1) <= band]
    result = {"accuracy": float(accuracy), "latency_ms": float(latency),
              "no_slower": int(len(no_slower)),
              "percentile_no_slower": float(100.0 * np.mean(no_slower <= accuracy)),
              "best_no_slower": float(no_slower.max()),
              "regret": float(no_slower.max() - accuracy), "within_band": int(len(near))}
    for n in draws:
        result[f"expected_best_of_{n}_random"] = expected_best_of(near, n)
    return result


def pareto_front(latencies, accuracies):
    """Indices of the networks no other network beats in both latency and accuracy, fastest
    first."""
    order = np.lexsort((-np.asarray(accuracies), np.asarray(latencies)))
    front, best = [], -np.inf
    for i in order:
        if accuracies[i] > best:
            front.append(int(i))
            best = accuracies[i]
    return front
