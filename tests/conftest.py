"""Shared fixtures: tiny spaces (tests must run on 2 CPU cores) and the ../shared data."""

import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(REPO), "shared")
TFDS_DIR = os.path.join(SHARED, "datasets", "tfds")
REFERENCE_DIR = os.path.join(SHARED, "reference", "proxylessnas")
sys.path.insert(0, REPO)


def tiny_space(**overrides):
    from proxyless_tf.search_space import small_input_space
    settings = dict(input_size=16, width_multiplier=0.25, widths=(16, 24), depths=(2, 2),
                    strides=(2, 1), head_width=32, candidates=("k3e3", "k5e6", "zero"))
    settings.update(overrides)
    return small_input_space(**settings)


@pytest.fixture
def space():
    return tiny_space()


def require_shared(path):
    if not os.path.exists(path):
        pytest.skip(f"{path} is absent (the ../shared folder beside the repository)")
    return path
