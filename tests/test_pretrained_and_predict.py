"""Released checkpoints, predicting image files, and the preprocessing of own digits."""

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from experiments.predict import main as predict
from lenet1998.data import encode, read_image, to_mnist
from lenet1998.results import RELEASED, ResultsError, load_pretrained, save_torch
from lenet1998.train import evaluate


def released(variant):
    if not (RELEASED / variant / "checkpoint.pt").is_file():
        pytest.skip(f"no released {variant} checkpoint")
    return load_pretrained(variant)


@pytest.mark.parametrize("variant", ["paper", "modern", "paper+distortions"])
def test_released_models_reproduce_their_recorded_test_error(variant, mnist):
    model = released(variant)
    error = evaluate(model, encode(mnist.test_images, model.config.input_coding), mnist.test_labels)
    assert error == pytest.approx(model.manifest["final_test_error"], abs=1e-6)


def test_unknown_release_lists_the_available_ones():
    with pytest.raises(ResultsError, match="available"):
        load_pretrained("lenet7")


def write_png(path, array):
    Image.fromarray(array.numpy()).save(path)
    return path


def test_predict_reads_real_test_digits_from_png(tmp_path, mnist):
    released("paper")
    files = []
    for i in range(8):  # MNIST is light ink on dark; write half of them inverted
        img = mnist.test_images[i] if i % 2 else 255 - mnist.test_images[i]
        files.append(str(write_png(tmp_path / f"d{i}.png", img)))
    result = CliRunner().invoke(predict, files + ["--device", "cpu", "--show", str(tmp_path / "show")])
    assert result.exit_code == 0, result.output
    got = [int(line.split(": ")[1].split()[0]) for line in result.output.splitlines()]
    assert got == mnist.test_labels[:8].tolist()
    assert "dark ink on light background" in result.output and "light ink on dark background" in result.output
    assert (tmp_path / "show" / "d0.png.pred.png").is_file()


def test_predict_reads_a_network_with_the_targets_head(tmp_path, mnist):
    """A network trained toward +-1 targets (the Fig. 9 networks, the 2009 demo's head) outputs
    penalties: the smallest wins. (predict read them as logits: a 7 came out as 8.)"""
    from experiments.variants import VARIANTS, budget
    from lenet1998.results import RunFolder

    folder = RunFolder(RELEASED.parent / "runs", budget(VARIANTS["net_fc300"].config, 20, 60_000).replace(seed=0))
    if not folder.done:
        pytest.skip("no finished net_fc300 run committed")
    files = [str(write_png(tmp_path / f"d{i}.png", mnist.test_images[i])) for i in range(8)]
    result = CliRunner().invoke(predict, files + ["--checkpoint", str(folder.path), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    got = [int(line.split(": ")[1].split()[0]) for line in result.output.splitlines()]
    assert got == mnist.test_labels[:8].tolist()  # its test error is about 2.3%
    assert "penalties to the +-1 targets (smallest wins)" in result.output


def test_preprocessing_centres_an_off_centre_digit_and_handles_polarity(mnist):
    digit = mnist.test_images[0].float() / 255  # light on dark, 28x28
    canvas = torch.zeros(80, 60)
    canvas[5:33, 30:58] = digit  # far off centre, on a larger canvas
    a, polarity_a = to_mnist(canvas)
    b, polarity_b = to_mnist(1 - canvas)  # the same digit, dark on light
    assert polarity_a.startswith("light") and polarity_b.startswith("dark")
    assert torch.equal(a, b)
    grid = torch.arange(28.0)
    m = a.float()
    cy = float((m.sum(1) * grid).sum() / m.sum())
    cx = float((m.sum(0) * grid).sum() / m.sum())
    assert abs(cy - 13.5) <= 0.6 and abs(cx - 13.5) <= 0.6
    rows = (m > 50).any(1).nonzero().flatten()
    cols = (m > 50).any(0).nonzero().flatten()
    assert max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 <= 21  # fits the 20x20 box


def test_bad_images_get_one_line_each_and_the_rest_still_run(tmp_path, mnist):
    released("paper")
    good = str(write_png(tmp_path / "good.png", mnist.test_images[0]))
    blank = str(write_png(tmp_path / "blank.png", torch.full((28, 28), 255, dtype=torch.uint8)))
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    result = CliRunner().invoke(predict, [str(tmp_path / "missing.png"), str(text), blank, good, "--device", "cpu"])
    assert result.exit_code == 1
    assert "no such file" in result.output and "not a readable image" in result.output
    assert f"{blank}: no digit (blank image)" in result.output
    assert f"{good}: {int(mnist.test_labels[0])}" in result.output
    assert "Traceback" not in result.output


def test_unknown_variant_and_incompatible_checkpoint_are_clear_errors(tmp_path, mnist):
    good = str(write_png(tmp_path / "good.png", mnist.test_images[0]))
    r = CliRunner().invoke(predict, [good, "--variant", "lenet7"])
    assert r.exit_code == 2 and "available" in r.output
    bad = tmp_path / "bad.pt"
    save_torch(bad, {"config": {"output": "linear", "loss": "cross_entropy"}, "state": {"layers.C1.weight": torch.zeros(6, 1, 5, 5)}})
    r = CliRunner().invoke(predict, [good, "--checkpoint", str(bad)])
    assert r.exit_code == 2 and "not a usable lenet1998 checkpoint" in r.output and "Traceback" not in r.output
    assert read_image(good).shape == (28, 28)


@pytest.mark.parametrize("variant", ["paper", "modern", "paper+distortions"])
def test_released_safetensors_weights_equal_the_checkpoint(variant):
    from lenet1998.results import load_checkpoint, read_safetensors

    folder = RELEASED / variant
    config, state = read_safetensors(folder / "model.safetensors")  # no pickle involved
    config_pt, state_pt = load_checkpoint(folder / "checkpoint.pt")
    assert config == config_pt and sorted(state) == sorted(state_pt)
    for name in state:  # the same numbers; the release stores each in the model's shape
        assert torch.equal(state[name], state_pt[name].reshape(state[name].shape)), name
    card = (folder / "MODEL_CARD.md").read_text()
    import hashlib

    assert hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest() in card
    assert f"{load_pretrained(variant).manifest['final_test_error']:.2f} %" in card


def test_load_pretrained_prefers_the_safetensors_weights(tmp_path):
    import shutil

    shutil.copytree(RELEASED / "paper", tmp_path / "paper")
    (tmp_path / "paper" / "checkpoint.pt").unlink()  # only the pickle-free weights left
    model, reference = load_pretrained("paper", root=tmp_path), load_pretrained("paper")
    x = torch.randn(4, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))
    assert model.manifest == reference.manifest
