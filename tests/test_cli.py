"""Bad input: one line on stderr naming the flag or file, exit status 2, no traceback."""

import os

import pytest

from conftest import assert_usage_error, run_module as run

SMOKE = ["--flagfile=flags/mobile.cfg", "--flagfile=flags/smoke.cfg"]


@pytest.mark.parametrize("args, words", [
    (["--candidates=k3e3,k4e6"], ["--candidates", "k4e6"]),
    (["--epochs=0"], ["--epochs"]),
    (["--batch_size=-8"], ["--batch_size"]),
    (["--skip_rate=1"], ["--skip_rate"]),
    (["--seed_candidate=k9e6"], ["--seed_candidate", "k9e6", "k3e3"]),
    (["--seed_candidate=widest", "--seed_fraction=0"], ["--seed_candidate", "--seed_fraction"]),
    (["--dataset=cifar10", "--data_dir=/nonexistent/tfds"], ["--data_dir", "/nonexistent/tfds"]),
    (["--dataset=no_such_dataset", "--data_dir=TMP"], ["--dataset", "no_such_dataset"]),
    (["--output_dir=TMP/a_file/run"], ["--output_dir"]),
])
def test_search_rejects_bad_flags(args, words, tmp_path):
    (tmp_path / "a_file").write_text("a file, not a directory\n")
    args = [a.replace("TMP", str(tmp_path)) for a in args]
    if "--output_dir" not in " ".join(args):
        args = args + [f"--output_dir={tmp_path}/out"]
    assert_usage_error(run("proxyless_tf.search", *SMOKE, *args), *words)


def test_arch_files_that_are_not_json_or_name_unknown_ops(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    assert_usage_error(run("proxyless_tf.show", f"--arch={bad}"), "bad.json", "not valid JSON")
    unknown = tmp_path / "unknown.json"
    text = run("proxyless_tf.show", "--arch=mobilenet_v2")
    assert text.returncode == 0 and "parameters: 3,504,872" in text.stdout
    from proxyless_tf import architecture
    data = architecture.reference("mobilenet_v2").to_json()
    data["blocks"][2]["op"] = "k9e9x"
    architecture.io_utils.write_json(str(unknown), data)
    assert_usage_error(run("proxyless_tf.show", f"--arch={unknown}"), "unknown.json", "k9e9x")


def test_outputs_are_written_atomically(tmp_path):
    from proxyless_tf import io_utils
    path = tmp_path / "arch.json"
    io_utils.write_json(str(path), {"ok": 1})
    with pytest.raises(TypeError):
        io_utils.write_json(str(path), {"bad": object()})  # fails half-way through
    assert path.read_text() == '{\n  "ok": 1\n}\n'
    assert os.listdir(tmp_path) == ["arch.json"]  # no temporary file left behind
