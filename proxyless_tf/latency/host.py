"""The machine latency is measured on, as tables, validations and the cache record it."""

import os
import platform


def cpu_model():
    """The CPU's model name (Linux: /proc/cpuinfo), else what the platform says, else ''."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or ""


def host_description():
    """One line naming this machine: host name, architecture, CPU model and logical CPUs.
    Two VMs of one type may share it; a table measured on another kind of machine does not."""
    cpu = cpu_model()
    return f"{platform.node()} {platform.machine()}{' ' + cpu if cpu else ''}, " \
           f"{os.cpu_count()} CPUs"
