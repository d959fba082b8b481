"""User-facing errors: one clear line, exit status 2, no traceback."""

import sys


class UsageError(Exception):
    """Bad input from the user (a flag, a file, a name). The message is one line that names it."""


def require_settings(config, positive, non_negative, name=str):
    """A UsageError naming the first field of `config` (a dataclass of settings) that is not
    positive, or negative where `non_negative`; `name(field)` is how the user calls it (a flag,
    a keyword)."""
    for field in positive:
        value = getattr(config, field)
        if value is None or value <= 0:
            raise UsageError(f"{name(field)} must be positive, got {value}")
    for field in non_negative:
        value = getattr(config, field)
        if value < 0:
            raise UsageError(f"{name(field)} must not be negative, got {value}")


def exit_on_usage_error(main):
    """Wraps an absl `main` so a UsageError prints one line to stderr and exits with status 2."""

    def wrapped(argv):
        try:
            return main(argv)
        except UsageError as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)

    return wrapped
