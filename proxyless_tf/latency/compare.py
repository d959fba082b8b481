"""`latency compare`: what each op of a space costs in several TFLite formats (the tables built
on this machine for each --latency_quantization, `machine.built_here`), the ratio of every
format to the first (int8 / float32), and whether the ops' order of cost changes between them.

A cost is what an op adds to the search's E[LAT] (`LatencyTable.part_ms`: its table entry less
the invoke overhead, calibrated). Per op it is summed over the searchable positions of the space;
per position the candidates are ranked in each format and the ranks compared (Kendall's tau).
Writes OUTPUT/compare.json, compare.md and compare.png.
"""

import math
import os

import numpy as np

from proxyless_tf import io_utils
from proxyless_tf.latency.parts import space_parts

MIN_BASE_MS = 1e-4  # a base cost at or below this (0.1 us; a calibrated one may be negative)
                    # has no meaningful ratio: None, with a note


def kendall_tau(a, b):
    """Kendall's tau (scipy's tau-b) of two {name: cost} rankings of the same names (1: the
    same order); 1.0 for fewer than two names, None where one ranking is all ties."""
    from scipy import stats
    names = sorted(a)
    if len(names) < 2:
        return 1.0
    tau = stats.kendalltau([a[n] for n in names], [b[n] for n in names]).statistic
    return None if math.isnan(tau) else float(tau)


def _ratio(cost, base_cost, what, notes):
    """cost / base_cost, or None (and a note) where the base cost is about 0 or negative."""
    if base_cost > MIN_BASE_MS:
        return cost / base_cost
    notes.append(f"{what}: the base cost {base_cost:.3g} ms is not positive, no ratio")
    return None


def compare_tables(space, tables):
    """The comparison of `tables` ({format: LatencyTable}, the first the base) on `space`'s
    searchable positions: per op its summed cost and ratio to the base, its rank in each
    format, and per position the candidates' order in each format. A ratio whose base cost is
    about 0 or negative is None, with a line in `notes`."""
    formats = list(tables)
    base = formats[0]
    _, searchable = space_parts(space)
    positions = [p for p in space.positions() if p.searchable]
    totals, rows, notes = {}, [], []
    for position, options in zip(positions, searchable):
        costs = {f: {op: tables[f].part_ms(part)
                     for op, part in zip(position.candidates, options) if part is not None}
                 for f in formats}
        for op in costs[base]:
            entry = totals.setdefault(op, {f: 0.0 for f in formats})
            for f in formats:
                entry[f] += costs[f][op]
        orders = {f: sorted(costs[f], key=costs[f].get) for f in formats}
        ratios = {f: {op: _ratio(costs[f][op], costs[base][op],
                                 f"position {position.index} {op} ({f}/{base})", notes)
                      for op in costs[base]}
                  for f in formats[1:]}
        rows.append({"position": position.index, "costs_ms": costs, "ratios": ratios,
                     "order": orders,
                     "same_order": all(orders[f] == orders[base] for f in formats),
                     "kendall_tau": {f: kendall_tau(costs[base], costs[f])
                                     for f in formats[1:]}})
    ops = {}
    for op, entry in totals.items():
        ratio = {f: _ratio(entry[f], entry[base], f"{op} summed ({f}/{base})", notes)
                 for f in formats[1:]}
        ops[op] = {"ms": {f: round(ms, 5) for f, ms in entry.items()},
                   "ratio": {f: None if r is None else round(r, 4) for f, r in ratio.items()}}
    order = {f: sorted(ops, key=lambda op: ops[op]["ms"][f]) for f in formats}
    return {"formats": formats, "base": base,
            "tables": {f: tables[f].source for f in formats},
            "ops": ops, "order": order,
            "order_changes": any(order[f] != order[base] for f in formats),
            "rank_tau": {f: kendall_tau({op: ops[op]["ms"][base] for op in ops},
                                        {op: ops[op]["ms"][f] for op in ops})
                         for f in formats[1:]},
            "positions": rows,
            "positions_reordered": sum(not row["same_order"] for row in rows),
            "notes": notes}


def _number(value, digits=3):
    return "n/a" if value is None else f"{value:.{digits}f}"


def markdown(result, title=""):
    formats, base = result["formats"], result["base"]
    others = formats[1:]
    lines = [f"# Op costs by TFLite format{': ' + title if title else ''}", "",
             "Cost: what the op adds to E[LAT] (table entry less the invoke overhead, "
             "calibrated), summed over the searchable positions; rank 1 = cheapest.", "",
             "| op | " + " | ".join(f"{f} ms" for f in formats) + " | "
             + " | ".join(f"{f}/{base}" for f in others) + " | "
             + " | ".join(f"rank {f}" for f in formats) + " |",
             "|---" * (2 * len(formats) + len(others) + 1) + "|"]
    for op in result["order"][base]:
        entry = result["ops"][op]
        lines.append(f"| {op} | " + " | ".join(f"{entry['ms'][f]:.4f}" for f in formats)
                     + " | " + " | ".join(_number(entry["ratio"][f]) for f in others) + " | "
                     + " | ".join(str(result["order"][f].index(op) + 1) for f in formats)
                     + " |")
    verdict = "changes" if result["order_changes"] else "is the same"
    lines += ["", f"Order of the ops' summed cost {verdict} between "
                  f"{', '.join(formats)} (Kendall's tau "
              + ", ".join(f"{f}: {_number(result['rank_tau'][f])}" for f in others) + ").",
              f"Positions whose candidates change order: {result['positions_reordered']} of "
              f"{len(result['positions'])}.", "",
              "Tables: " + ", ".join(f"{f} `{path}`" for f, path in result["tables"].items())]
    lines += [f"Note: {note}" for note in result.get("notes", [])]
    return "\n".join(lines) + "\n"


def ratios_png(result, path, title=""):
    """Left: each op's summed cost per format. Right: each op's ratio to the base format, the
    dots its ratio at each position."""
    from proxyless_tf.plots import pyplot, save_png
    plt = pyplot()
    formats, base = result["formats"], result["base"]
    ops = result["order"][base]
    x = np.arange(len(ops))
    fig, (left, right) = plt.subplots(1, 2, figsize=(max(8.0, 1.1 * len(ops) + 4), 4.5))
    width = 0.8 / len(formats)
    for i, f in enumerate(formats):
        left.bar(x + (i - (len(formats) - 1) / 2) * width,
                 [result["ops"][op]["ms"][f] for op in ops], width, label=f)
    left.set_xticks(x, ops, rotation=45, ha="right")
    left.set_ylabel("summed cost over the positions (ms)")
    left.set_title("cost per op (cheapest in the first format on the left)", fontsize=9)
    left.legend(fontsize=8)
    for i, f in enumerate(formats[1:]):
        offset = (i - (len(formats) - 2) / 2) * width
        right.bar(x + offset, [_or_nan(result["ops"][op]["ratio"][f]) for op in ops], width,
                  alpha=0.6, label=f"{f} / {base}")
        for j, op in enumerate(ops):
            points = [row["ratios"][f][op] for row in result["positions"]
                      if row["ratios"][f].get(op) is not None]
            right.scatter(np.full(len(points), j + offset), points, s=10, color="black")
    right.axhline(1.0, color="gray", lw=1)
    right.set_xticks(x, ops, rotation=45, ha="right")
    right.set_ylabel("cost ratio (dots: each position)")
    right.set_title(f"ratio to {base}; op order "
                    f"{'changes' if result['order_changes'] else 'unchanged'}", fontsize=9)
    right.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_png(fig, path, dpi=100)


def _or_nan(value):
    return float("nan") if value is None else value


def write(result, output_dir, title=""):
    """OUTPUT_DIR/compare.json, compare.md and compare.png; returns their paths."""
    io_utils.ensure_writable_dir(output_dir, "--output")
    paths = [os.path.join(output_dir, f"compare.{ext}") for ext in ("json", "md", "png")]
    io_utils.write_json(paths[0], result)
    io_utils.write_text(paths[1], markdown(result, title))
    ratios_png(result, paths[2], title)
    return paths
