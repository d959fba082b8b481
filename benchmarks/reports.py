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
    """matplotlib.pyplot on the Agg backend (`proxyless_tf.plots.pyplot`): figures are only
    ever written to files. Imported on first use: a benchmark's flag errors come first."""
    from proxyless_tf import plots
    return plots.pyplot()


def save_png(fig, path, dpi=110):
    """Writes `fig` to `path` as a PNG, whole, and closes it (`proxyless_tf.plots.save_png`)."""
    from proxyless_tf import plots
    plots.save_png(fig, path, dpi)
