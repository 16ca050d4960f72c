"""Faults a newcomer found (issue "what a newcomer and a statistical reviewer found", items 1-4):
a tiny image no longer aborts a batch, released weights load the standard way, 16-bit, EXIF-
rotated and float images decode, and non-digits get MAP's own "no digit" answer."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
from click.testing import CliRunner
from PIL import Image

from experiments.predict import main as predict
from lenet1998.data import encode, read_image
from lenet1998.model import LeNet5
from lenet1998.results import RELEASED, read_manifest, read_safetensors

VARIANTS = sorted(p.parent.name for p in RELEASED.glob("*/model.safetensors"))
REPO_RUNS = RELEASED.parent / "runs"


def run(*args):
    return CliRunner().invoke(predict, [*map(str, args), "--device", "cpu"])


def needs_release():
    if not (RELEASED / "paper" / "model.safetensors").is_file():
        pytest.skip("no released paper model")


def digit_png(path, image: torch.Tensor, mode: str = "L"):
    """An MNIST digit (uint8 28x28, ink high) as dark ink on white, in PIL mode `mode`."""
    a = 255 - image.numpy().astype(np.int64)
    if mode == "I;16":
        Image.fromarray((a * 257).astype(np.uint16)).save(path)  # full 16-bit range
    elif mode == "F":
        Image.fromarray((a / 255.0).astype(np.float32), mode="F").save(path)
    else:
        Image.fromarray(a.astype(np.uint8)).save(path)
    return str(path)


def test_a_tiny_image_is_no_digit_and_the_batch_goes_on(tmp_path, mnist):
    needs_release()
    tiny = tmp_path / "tiny.png"
    Image.fromarray(np.zeros((1, 1), dtype=np.uint8)).save(tiny)
    wide = tmp_path / "wide.png"
    Image.fromarray(np.zeros((1, 2), dtype=np.uint8)).save(wide)
    good = digit_png(tmp_path / "good.png", mnist.test_images[0])
    for fmt in ("json", "csv", "text"):
        result = run(tiny, wide, good, "--format", fmt)
        assert result.exit_code == 0, result.output
        if fmt == "json":
            records = json.loads(result.stdout)
            assert records[0]["no_digit"] == "image too small: 1x1" and records[0]["error"] is None
            assert records[1]["no_digit"] == "image too small: 2x1"
            assert records[2]["predicted"] == int(mnist.test_labels[0])
        elif fmt == "csv":
            rows = list(csv.DictReader(io.StringIO(result.stdout)))
            assert rows[0]["no_digit"] == "image too small: 1x1" and rows[2]["predicted"] == str(int(mnist.test_labels[0]))
        else:
            assert f"{tiny}: no digit (image too small: 1x1)" in result.stdout


@pytest.mark.parametrize("variant", VARIANTS)
def test_released_safetensors_load_the_standard_way_and_reproduce_the_card(variant, mnist):
    folder = RELEASED / variant
    config, _ = read_safetensors(folder / "model.safetensors")  # the config in the file's metadata
    model = LeNet5(config)
    state = safetensors.torch.load_file(str(folder / "model.safetensors"))
    model.load_state_dict(state)  # strict: every key, every shape
    x = encode(mnist.test_images, config.input_coding).unsqueeze(1)
    with torch.no_grad():
        wrong = sum(int((model.predict(model(x[s:s + 1000])) != mnist.test_labels[s:s + 1000]).sum())
                    for s in range(0, 10000, 1000))
    assert wrong / 100 == pytest.approx(read_manifest(folder)["final_test_error"], abs=0.011)


def test_sixteen_bit_exif_rotated_and_float_images_decode(tmp_path, mnist):
    reference = read_image(digit_png(tmp_path / "eight.png", mnist.test_images[0]))
    sixteen = read_image(digit_png(tmp_path / "sixteen.png", mnist.test_images[0], "I;16"))
    torch.testing.assert_close(sixteen, reference, atol=1 / 255, rtol=0)
    floats = tmp_path / "float.tif"
    digit_png(floats, mnist.test_images[0], "F")
    torch.testing.assert_close(read_image(floats), reference, atol=1 / 255, rtol=0)
    # a JPEG stored sideways with EXIF orientation 6 (rotate 90 degrees clockwise to view)
    upright = Image.fromarray(255 - mnist.test_images[0].numpy())
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what a camera writes before its tag
    exif = Image.Exif()
    exif[0x0112] = 6
    jpeg = tmp_path / "phone.jpg"
    stored.save(jpeg, exif=exif, quality=100)
    torch.testing.assert_close(read_image(jpeg), reference, atol=0.1, rtol=0)


def test_a_batch_with_a_tiny_a_16_bit_an_exif_and_a_clean_digit_is_answered(tmp_path, mnist):
    needs_release()
    tiny = tmp_path / "tiny.png"
    Image.fromarray(np.zeros((1, 1), dtype=np.uint8)).save(tiny)
    sixteen = digit_png(tmp_path / "sixteen.png", mnist.test_images[1], "I;16")
    stored = Image.fromarray((255 - mnist.test_images[2].numpy())).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    phone = tmp_path / "phone.jpg"
    stored.save(phone, exif=exif, quality=100)
    clean = digit_png(tmp_path / "clean.png", mnist.test_images[3])
    result = run(tiny, sixteen, phone, clean, "--format", "json")
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)
    assert records[0]["no_digit"] == "image too small: 1x1"
    assert [r["predicted"] for r in records[1:]] == mnist.test_labels[1:4].tolist()


def test_non_digits_get_maps_own_no_digit_answer(tmp_path):
    needs_release()
    noise = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)).save(noise)
    dot = tmp_path / "dot.png"
    field = np.full((28, 28), 255, dtype=np.uint8)
    field[14, 14] = 0
    Image.fromarray(field).save(dot)
    small = tmp_path / "five.png"
    Image.fromarray(np.full((5, 5), 255, dtype=np.uint8)).save(small)
    result = run(noise, dot, small, "--format", "json")
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)
    assert records[0]["predicted"] is None and records[0]["no_digit"].startswith("none-of-these")
    assert records[0]["none"] > max(records[0]["probabilities"])
    assert records[1]["no_digit"] == "ink too small: 1x1 pixels"
    assert records[2]["no_digit"] == "image too small: 5x5"


def test_a_softmax_model_keeps_its_answer_for_noise(tmp_path):
    if not (RELEASED / "modern" / "model.safetensors").is_file():
        pytest.skip("no released modern model")
    noise = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)).save(noise)
    result = run(noise, "--variant", "modern", "--format", "json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)[0]
    assert record["predicted"] is not None and record["no_digit"] is None


def test_under_ci_a_missing_mnist_fails_instead_of_skipping(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    test = "tests/test_data_and_training.py::test_same_seed_same_weights_other_seed_other_weights"
    env = {**os.environ, "LENET1998_DATA": str(tmp_path / "nowhere"), "CI": "true"}
    failed = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test], cwd=repo, env=env,
                            capture_output=True, text=True, timeout=300)
    assert failed.returncode != 0 and "holds no MNIST" in failed.stdout, failed.stdout[-2000:]
    env["CI"] = ""
    skipped = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test], cwd=repo, env=env,
                             capture_output=True, text=True, timeout=300)
    assert skipped.returncode == 0 and "skipped" in skipped.stdout, skipped.stdout[-2000:]


# --- item 7, the smaller ones ---

def test_all_with_only_is_refused(tmp_path):
    from experiments.ablate import main as ablate

    result = CliRunner().invoke(ablate, ["--all", "--only", "paper", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "--all is the whole single-factor grid" in result.output
    assert not (tmp_path / "o").exists()


def test_report_of_a_folder_without_runs_is_refused_and_creates_nothing(tmp_path):
    from experiments.report import main as report

    result = CliRunner().invoke(report, ["--out", str(tmp_path / "reslts")])
    assert result.exit_code == 2 and "holds no runs/ folder" in result.output
    assert not (tmp_path / "reslts").exists()


def test_a_negative_seed_is_refused():
    from experiments.train import main as train

    result = CliRunner().invoke(train, ["--seed", "-1"])
    assert result.exit_code == 2 and "-1" in result.output


def test_predict_names_a_missing_checkpoint_and_takes_a_run_folder(tmp_path, mnist):
    result = run("x.png", "--checkpoint", "/nonexistent.pt")
    assert result.exit_code != 0 and "/nonexistent.pt: no such checkpoint" in result.output
    folder = RELEASED / "paper"  # a folder holding checkpoint.pt, as a run folder does
    if not (folder / "checkpoint.pt").is_file():
        pytest.skip("no released paper checkpoint")
    good = digit_png(tmp_path / "good.png", mnist.test_images[0])
    result = run(good, "--checkpoint", folder)
    assert result.exit_code == 0 and f"{good}: {int(mnist.test_labels[0])}" in result.output


def test_latex_minus_signs_are_math():
    from experiments.ablation_tables import latex_signs

    assert latex_signs("-0.12 [-0.20, +0.05]") == "$-$0.12 [$-$0.20, $+$0.05]"
    assert latex_signs("paper-like") == "paper-like"


def test_train_on_a_run_another_process_holds_exits_non_zero(tmp_path, data_dir):
    from experiments.train import EXIT_BUSY, main as train
    from lenet1998.config import LeNetConfig
    from lenet1998.results import RunFolder, RunLock

    config = LeNetConfig(train_size=100, epochs=1, sdlm_samples=20)
    folder = RunFolder(tmp_path, config)
    folder.path.mkdir(parents=True)
    lock = RunLock(folder.path)
    assert lock.acquire()  # this process stands in for the other `train`
    try:
        args = ["--set", "train_size=100", "--set", "sdlm_samples=20", "--epochs", "1", "--out", str(tmp_path),
                "--data-dir", str(data_dir)]
        result = CliRunner().invoke(train, args)
        assert result.exit_code == EXIT_BUSY, result.output
        assert "another process is training" in result.output
    finally:
        lock.release()
    result = CliRunner().invoke(train, args)
    assert result.exit_code == 0, result.output
    again = CliRunner().invoke(train, args)
    assert again.exit_code == 0 and "already done" in again.output


def test_ablate_needs_mnist_only_to_train_and_leaves_no_folder_when_it_is_missing(tmp_path, monkeypatch):
    import experiments.ablate as ablate

    result = CliRunner().invoke(ablate.main, ["--only", "paper", "--out", str(tmp_path / "new"),
                                              "--data-dir", str(tmp_path / "no-mnist")])
    assert result.exit_code != 0 and "no-mnist" in result.output
    assert not (tmp_path / "new").exists()
    done = tmp_path / "done"  # every run of --only paper (3 seeds) already there: nothing to train
    done.mkdir()
    (done / "runs").symlink_to(REPO_RUNS, target_is_directory=True)
    built = []
    monkeypatch.setattr(ablate, "build_report", lambda out, **kw: built.append(out) or [])
    result = CliRunner().invoke(ablate.main, ["--only", "paper", "--out", str(done), "--data-dir", str(tmp_path / "no-mnist")])
    assert result.exit_code == 0, result.output
    assert "0 to train" in result.output and built == [done]


def test_an_interrupt_says_what_is_kept_on_a_line_of_its_own():
    import click

    from experiments.common import one_line_errors

    @click.command()
    @one_line_errors
    def stopped():
        click.echo("\r  1200/60000 patterns", nl=False, err=True)
        raise KeyboardInterrupt

    result = CliRunner().invoke(stopped, [])
    assert result.exit_code == 130
    assert "\ninterrupted: every pass that had finished is saved" in result.output
    assert "starts over" in result.output


def test_a_run_is_labelled_by_the_variant_whose_config_it_has():
    """`paper` seeds 0 and 1 were stored as `train` (experiments.train's old default label)."""
    from experiments.variants import VARIANTS, label_of
    from lenet1998.config import LeNetConfig

    assert label_of(LeNetConfig(seed=3)) == "paper"
    assert label_of(VARIANTS["relu"].config.replace(epochs=2, train_size=500)) == "relu"
    assert label_of(LeNetConfig(eta_schedule=((1, 1e-3),))) == "train"
    for path in (Path(__file__).parents[1] / "results" / "runs").glob("*/config.json"):
        assert json.loads(path.read_text())["label"] != "train", path


@pytest.mark.parametrize("module", ["ablate", "report", "train", "predict", "bench", "fingerprint", "release"])
def test_a_bad_command_line_is_one_error_line_in_the_librarys_style(module):
    """click's usage errors read like the library's: `error: ...` on one line, exit 2."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-m", f"experiments.{module}", "--no-such-option"], capture_output=True,
                          text=True, cwd=repo, timeout=120)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith("error: No such option") and f"experiments.{module} --help" in lines[0]
