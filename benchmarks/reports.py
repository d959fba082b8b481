"""What the benchmarks' reports are made of: markdown table lines, figures as they print, and
PNGs written whole (matplotlib without a display)."""


def md_row(cells):
    """One markdown table line: | a | b |."""
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def md_table(header):
    """A markdown table's header line and its separator."""
    return [md_row(header), "|" + "---|" * len(header)]


def percent(value):
    """An accuracy in 0-1 as a percentage with two decimals; '-' when there is none."""
    return "-" if value is None else f"{100 * value:.2f}"


def signed(value, digits=2):
    """+0.12 / -0.12; 'n/a' for an undefined statistic (None)."""
    return "n/a" if value is None else f"{value:+.{digits}f}"


def pyplot():
    """matplotlib.pyplot on the Agg backend: figures are only ever written to files."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_png(fig, path, dpi=110):
    """Writes `fig` to `path` as a PNG, whole (a temporary file renamed over it), and closes it."""
    from proxyless_tf import io_utils
    with io_utils.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    pyplot().close(fig)
