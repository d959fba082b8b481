"""User-facing errors: one clear line, exit status 2, no traceback."""

import sys


class UsageError(Exception):
    """Bad input from the user (a flag, a file, a name). The message is one line that names it."""


def exit_on_usage_error(main):
    """Wraps an absl `main` so a UsageError prints one line to stderr and exits with status 2."""

    def wrapped(argv):
        try:
            return main(argv)
        except UsageError as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)

    return wrapped
