"""PNG figures written next to results (matplotlib, headless)."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from proxyless_tf import io_utils  # noqa: E402


def pyplot():
    """matplotlib.pyplot on the Agg backend (figures are only ever written to files)."""
    return plt


def save_png(fig, path, dpi=100):
    """Writes `fig` to `path` as a PNG, whole (a temporary file renamed over it: a reader never
    sees half a file), and closes it. Every PNG of the project is written through here."""
    with io_utils.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)


def probabilities_png(supernet, history, path, derived_ops=None):
    """Left: final path probabilities per block (rows) and op (columns), the derived op outlined
    (`derived_ops`, one per searchable block; default: the argmax). Right: probability of each
    block's derived op over the epochs."""
    ops = sorted({op for m in supernet.mixed_ops for op in m.candidates},
                 key=lambda o: (o == "zero", o))
    grid = np.full((len(supernet.mixed_ops), len(ops)), np.nan)
    for row, (m, p) in enumerate(zip(supernet.mixed_ops, supernet.probabilities())):
        for op, value in zip(m.candidates, p):
            grid[row, ops.index(op)] = value
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 0.35 * len(grid) + 2.5))
    image = left.imshow(grid, cmap="viridis", aspect="auto", vmin=0)
    left.set_xticks(range(len(ops)), ops)
    left.set_yticks(range(len(grid)), [f"block {m.block_index}" for m in supernet.mixed_ops])
    derived_cols = [int(np.nanargmax(grid[row])) for row in range(len(grid))] \
        if derived_ops is None else [ops.index(op) for op in derived_ops]
    for row, col in enumerate(derived_cols):
        left.add_patch(plt.Rectangle((col - 0.5, row - 0.5), 1, 1, fill=False, color="red", lw=2))
    left.set_title("path probabilities (red: derived op)")
    fig.colorbar(image, ax=left, fraction=0.04)
    if history:
        epochs = [h["epoch"] for h in history]
        for row, (m, col) in enumerate(zip(supernet.mixed_ops, derived_cols)):
            k = m.candidates.index(ops[col])
            right.plot(epochs, [h["probs"][row][k] for h in history], lw=1,
                       label=f"b{m.block_index} {ops[col]}")
        right.set_xlabel("epoch")
        right.set_ylabel("probability of the derived op")
        right.legend(fontsize=6, ncol=2)
    right.set_title("probabilities over the search")
    fig.tight_layout()
    save_png(fig, path, dpi=90)
