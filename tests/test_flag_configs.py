"""The commands' flags as the library's configs (proxyless_tf/flag_configs.py): a config's
defaults are the flags' defaults, and every flag reaches its field."""

import dataclasses

import pytest
from absl.testing import flagsaver

from proxyless_tf import distribute, flag_configs, options
from proxyless_tf.errors import UsageError
from proxyless_tf.latency.config import LatencyConfig


pytestmark = pytest.mark.usefixtures("flags_parsed")


def test_the_configs_defaults_are_the_flags_defaults():
    with flagsaver.flagsaver():
        for name in options.FLAGS:  # every flag at its default, whatever ran before
            options.FLAGS[name].value = options.FLAGS[name].default
        assert flag_configs.latency_config_from_flags() == LatencyConfig()
        assert flag_configs.distribute_config_from_flags() == distribute.DistributeConfig()
        from proxyless_tf.reinforce import ReinforceConfig
        assert flag_configs.reinforce_config_from_flags() == ReinforceConfig()
        assert flag_configs.meter_from_flags() == LatencyConfig().meter()


def test_every_latency_flag_reaches_its_field():
    changed = dict(latency_runtime="tf_cpu", latency_threads=2, latency_batch=3,
                   latency_warmup=4, latency_runs=5, latency_clean=False, latency_quiet=0.5,
                   latency_quiet_timeout=7.0, latency_table="auto", latency_stat="mean",
                   latency_cache_dir="/tmp/c", latency_references=["mobilenet_v2", ""],
                   latency_rounds=8, latency_calibrate=9, latency_rebuild=True,
                   latency_check=False, latency_check_networks=10, latency_recheck=True,
                   target_ms=None, target_ratio=0.7, target_reference="all:k3e6",
                   latency_loss="abs", latency_lambda=0.1, latency_a=0.3, latency_b=0.4,
                   latency_beta=5.0, latency_source="measure")
    with flagsaver.flagsaver(**changed):
        config = flag_configs.latency_config_from_flags()
    default = LatencyConfig()
    same = [f.name for f in dataclasses.fields(LatencyConfig)
            if getattr(config, f.name) == getattr(default, f.name)]
    # target_ms stays None (a ratio target); quantization is another flag's (issue 29)
    assert set(same) <= {"target_ms", "quantization"}, same
    assert config.references == ("mobilenet_v2",) and config.lam == 0.1
    assert config.meter().describe().startswith("tf_cpu, 2 thread(s), batch 3")


def test_a_negative_logical_cpu_count_is_refused_before_tensorflow_starts():
    with flagsaver.flagsaver(logical_cpus=-1):
        with pytest.raises(UsageError, match="--logical_cpus must not be negative"):
            flag_configs.strategy_from_flags()
