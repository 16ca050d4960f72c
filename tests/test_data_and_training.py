"""The loader's checks, the input coding, determinism, replicas and a short real training."""

import hashlib
import struct

import pytest
import torch
from click.testing import CliRunner

from lenet1998 import data as data_module
from lenet1998.config import ConfigError, LeNetConfig
from lenet1998.data import DataError, encode, load_mnist
from lenet1998.train import ResumePoint, fit


def write_idx(raw, n=5):
    """Tiny IDX files in MNIST's format: n images of 28x28 and n labels, per split."""
    raw.mkdir(parents=True, exist_ok=True)
    sums = {}
    for prefix in ("train", "t10k"):
        images = bytes((i * 7) % 256 for i in range(n * 784))
        files = {
            f"{prefix}-images-idx3-ubyte": struct.pack(">IIII", 2051, n, 28, 28) + images,
            f"{prefix}-labels-idx1-ubyte": struct.pack(">II", 2049, n) + bytes(range(n)),
        }
        for name, blob in files.items():
            (raw / name).write_bytes(blob)
            sums[name] = hashlib.md5(blob).hexdigest()
    return sums


def test_missing_files_name_the_folder_and_files(tmp_path):
    with pytest.raises(DataError) as e:
        load_mnist(tmp_path, download=False)
    message = str(e.value)
    assert str(tmp_path / "MNIST" / "raw") in message
    assert all(name in message for name in data_module.MNIST_FILES)


def test_corrupt_or_truncated_files_are_refused(tmp_path, monkeypatch):
    raw = tmp_path / "MNIST" / "raw"
    sums = write_idx(raw)
    monkeypatch.setattr(data_module, "MNIST_FILES", sums)
    monkeypatch.setattr(data_module.check_files, "__defaults__", (sums,))
    loaded = load_mnist(tmp_path, download=False)  # the good tiny files load
    assert loaded.train_images.shape == (5, 28, 28) and loaded.test_labels.tolist() == [0, 1, 2, 3, 4]
    blob = (raw / "train-images-idx3-ubyte").read_bytes()
    (raw / "train-images-idx3-ubyte").write_bytes(blob[:-100])  # truncated
    with pytest.raises(DataError, match="corrupt or truncated"):
        load_mnist(tmp_path, download=False)


def test_real_files_fail_the_real_checksums_when_changed(tmp_path):
    write_idx(tmp_path / "MNIST" / "raw")  # right names, wrong content
    with pytest.raises(DataError, match="train-images-idx3-ubyte is corrupt"):
        load_mnist(tmp_path, download=False)


def test_input_coding_is_the_papers():
    img = torch.zeros(1, 28, 28, dtype=torch.uint8)
    img[0, 10, 10] = 255
    x = encode(img, "paper")
    assert x.shape == (1, 32, 32)
    assert float(x[0, 0, 0]) == pytest.approx(-0.1)  # padding is background, not zero
    assert float(x[0, 12, 12]) == pytest.approx(1.175)  # black ink, shifted by the 2-pixel pad
    u = encode(img, "unit")
    assert float(u[0, 0, 0]) == 0.0 and float(u[0, 12, 12]) == 1.0


def test_config_errors_list_the_valid_options():
    with pytest.raises(ConfigError, match="relu"):
        LeNetConfig(squashing="sigmoid")
    with pytest.raises(ConfigError, match="cross_entropy"):
        LeNetConfig(output="linear")  # the MAP loss needs the RBF output
    with pytest.raises(ConfigError, match="batch_size"):
        LeNetConfig(batch_size=32)  # SDLM is per pattern
    with pytest.raises(ConfigError, match="unknown"):
        LeNetConfig().replace(colour="red")
    assert LeNetConfig().digest() == LeNetConfig.from_dict(LeNetConfig().to_dict()).digest()
    assert LeNetConfig().digest() != LeNetConfig(seed=1).digest()


def small(**changes):
    return LeNetConfig(**{"epochs": 1, "train_size": 300, "sdlm_samples": 50, **changes})


def untimed(history):
    return [{k: v for k, v in r.items() if not k.endswith("time_s")} for r in history]


def test_same_seed_same_weights_other_seed_other_weights(mnist):
    (a,) = fit(small(), mnist, engine="eager")
    (b,) = fit(small(), mnist, engine="eager")
    (c,) = fit(small(seed=1), mnist, engine="eager")
    for name in a.state:
        assert torch.equal(a.state[name], b.state[name]), name
    assert not torch.equal(a.state["layers.C1.weight"], c.state["layers.C1.weight"])
    assert untimed(a.history) == untimed(b.history)


@pytest.mark.parametrize("optimizer,batch_size", [("sdlm", 1), ("adam", 10)])
def test_resume_after_a_pass_gives_the_same_weights(mnist, optimizer, batch_size):
    config = small(epochs=2, train_size=200, optimizer=optimizer, batch_size=batch_size)
    (full,) = fit(config, mnist, engine="eager")
    saved = {}
    (first,) = fit(config.replace(epochs=1), mnist, engine="eager",
                   on_pass=lambda n, results, rule_states: saved.update(rule=rule_states[0]))
    start = ResumePoint(1, first.state, first.history, saved["rule"])
    (resumed,) = fit(config, mnist, start=[start], engine="eager")
    for name in full.state:
        assert torch.equal(full.state[name], resumed.state[name]), name
    assert untimed(full.history)[1:] == untimed(resumed.history)[1:]  # pass 1 of a 1-pass run also has train_error_final
    if optimizer == "adam":  # without Adam's moments the second pass goes elsewhere: the test can fail
        (fresh,) = fit(config, mnist, start=[ResumePoint(1, first.state, first.history, None)], engine="eager")
        assert not torch.allclose(fresh.state["layers.F6.weight"], full.state["layers.F6.weight"], atol=1e-5)


def test_short_real_training_learns(mnist):
    config = LeNetConfig(epochs=2, train_size=3000, sdlm_samples=200)
    (r,) = fit(config, mnist, engine="eager")
    assert r.failed is None
    assert r.history[-1]["test_error"] < 12.0  # 3,000 patterns twice; chance is 90%
    assert r.history[-1]["train_error"] < r.history[0]["train_error"]
    assert "eps_max_C1" in r.history[0] and 0 < r.history[0]["eps_min_C1"] <= r.history[0]["eps_max_C1"] <= 5e-4 / 0.02


def test_a_diverging_run_is_stopped_with_its_reason(mnist):
    config = small(optimizer="sgd", lr=1e4, loss="mle", squashing="relu")
    (r,) = fit(config, mnist, engine="eager")
    assert r.failed is not None and "non-finite" in r.failed


def test_train_command_rejects_bad_input_in_one_line(tmp_path):
    from experiments.train import main

    runner = CliRunner()
    for args, fragment in [
        (["--set", "init=bogus"], "choose one of"),
        (["--data-dir", str(tmp_path / "none"), "--out", str(tmp_path / "o")], "MNIST not found"),
        (["--out", "/proc/forbidden"], "cannot write"),
        (["--epochs", "0"], "0"),
    ]:
        result = runner.invoke(main, args)
        assert result.exit_code == 2, args
        assert fragment in result.output
        assert "Traceback" not in result.output
