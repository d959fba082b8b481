"""The latency target T of the search: a LatencyConfig's target_ms, or its target_ratio times
the target_reference network's latency (measured on this machine when the check ran, else
predicted by the table)."""

from proxyless_tf.errors import UsageError
from proxyless_tf.latency.parts import resolve_arch


def check_target_values(target_ms=None, target_ratio=None):
    """The errors a target has on its own, before any table or measurement."""
    if target_ms is not None and target_ratio is not None:
        raise UsageError("give either --target_ms or --target_ratio, not both")
    if target_ms is not None and not target_ms > 0:
        raise UsageError(f"--target_ms must be positive, got {target_ms}")
    if target_ms is None and target_ratio is None:
        raise UsageError("--latency_table needs a target: --target_ms=MS or --target_ratio=R "
                         "(R times --target_reference's predicted latency)")
    if target_ratio is not None and not target_ratio > 0:
        raise UsageError(f"--target_ratio must be positive, got {target_ratio}")


def reference_network(space, config):
    """The network config.target_ratio refers to (None for an absolute target)."""
    if config.target_ratio is None:
        return None
    return resolve_arch(config.target_reference, space, "--target_reference")


def resolve_target(table, space, target_ms=None, target_ratio=None, reference="mobilenet_v2",
                   reference_ms=None):
    """T in ms: `target_ms`, or `target_ratio` x the reference's latency: `reference_ms` when
    given (the reference measured on this machine), else the table's prediction."""
    check_target_values(target_ms, target_ratio)
    if target_ms is not None:
        return float(target_ms)
    if reference_ms is not None:
        return float(target_ratio) * float(reference_ms)
    arch = resolve_arch(reference, space, "--target_reference")
    try:
        base = table.predict(arch)
    except UsageError as e:
        raise UsageError(f"--target_reference={reference}: {e} (or use --target_ms, or a "
                         "reference inside the space such as all:k3e6)") from None
    return float(target_ratio) * base
