"""Atomic file output: a reader never sees a half-written artifact."""

import contextlib
import json
import os
import tempfile

from proxyless_tf.errors import UsageError


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path next to `path`; renames it over `path` only if the body succeeds."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    suffix = os.path.splitext(path)[1]  # keep the extension: some writers (savefig, .keras) need it
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=directory)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text(path, text):
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)


def write_json(path, data):
    write_text(path, json.dumps(data, indent=2) + "\n")


def read_json(path, what="file"):
    """Reads JSON, turning a missing or malformed file into a one-line UsageError."""
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise UsageError(f"{what} {path!r} does not exist") from None
    except json.JSONDecodeError as e:
        raise UsageError(f"{what} {path!r} is not valid JSON: {e.msg} at line {e.lineno}") from None
    except OSError as e:
        raise UsageError(f"{what} {path!r} cannot be read: {e.strerror}") from None


def ensure_writable_dir(path, flag="--output_dir"):
    """Creates `path` if needed and checks that files can be written in it."""
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path):
            pass
    except OSError as e:
        raise UsageError(f"{flag}={path!r} cannot be written: {e.strerror}") from None
    return path
