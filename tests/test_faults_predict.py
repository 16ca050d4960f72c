"""Faults found in predict and the data folder: each test here failed against the old code.

predict: a decompression bomb, a transparent background, a directory, a shaded background,
machine-readable output; the class posteriors of Eq. (9); a wrong --data-dir.
Every file is written under tmp_path; the shared MNIST folder is only read.
"""

import csv
import io
import json

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from experiments.predict import main as predict
from experiments.train import main as train
from lenet1998 import data as data_module
from lenet1998.data import DataError, load_mnist, read_image, resolve_data_dir, to_mnist
from lenet1998.results import RELEASED, load_pretrained

from .test_data_and_training import write_idx


def released(variant="paper"):
    if not (RELEASED / variant / "checkpoint.pt").is_file():
        pytest.skip(f"no released {variant} checkpoint")
    return load_pretrained(variant)


def write_png(path, array):
    """uint8 (H, W) or (H, W, C) tensor -> PNG file."""
    Image.fromarray(array.numpy()).save(path)
    return str(path)


def run_predict(*args):
    return CliRunner().invoke(predict, [*map(str, args), "--device", "cpu"])


def predicted(output, path):
    """The digit the text output gives for path."""
    for line in output.splitlines():
        if line.startswith(f"{path}: "):
            return int(line.split(": ")[1].split()[0])
    return None


# --- a decompression bomb, and other read errors, cost only their own image ---

def test_a_huge_image_is_one_error_and_the_batch_goes_on(tmp_path, mnist):
    released()
    huge = tmp_path / "huge.png"
    Image.new("1", (14000, 14000), 1).save(huge)  # 196 Mpixel, a few KB on disk: over PIL's bomb limit
    assert huge.stat().st_size < 100_000
    truncated = tmp_path / "truncated.png"
    write_png(truncated, mnist.test_images[1])
    truncated.write_bytes(truncated.read_bytes()[:60])  # header only: PIL fails while decoding
    good = write_png(tmp_path / "good.png", mnist.test_images[0])
    result = run_predict(huge, truncated, good)
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    errors = result.stderr.splitlines()
    assert len(errors) == 2
    assert str(huge) in errors[0] and "too large" in errors[0]
    assert str(truncated) in errors[1]
    assert predicted(result.stdout, good) == int(mnist.test_labels[0])


def test_the_bomb_limit_path_via_a_low_max_image_pixels(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 2x this raises DecompressionBombError
    path = write_png(tmp_path / "big.png", torch.zeros(30, 30, dtype=torch.uint8))
    with pytest.raises(data_module.ImageError, match="too large"):
        read_image(path)


# --- transparency ---

def rgba(digit, colour):
    """An MNIST digit (uint8 28x28, light on dark) as ink of one colour on a transparent background."""
    out = torch.empty(28, 28, 4, dtype=torch.uint8)
    out[..., :3] = colour
    out[..., 3] = digit  # ink opaque, background alpha 0
    return out


@pytest.mark.parametrize("colour, polarity", [(0, "dark ink on light"), (255, "light ink on dark")])
def test_a_digit_on_a_transparent_background_is_read(tmp_path, mnist, colour, polarity):
    released()
    files = [write_png(tmp_path / f"t{i}.png", rgba(mnist.test_images[i], colour)) for i in range(4)]
    result = run_predict(*files)
    assert result.exit_code == 0, result.output
    assert [predicted(result.stdout, f) for f in files] == mnist.test_labels[:4].tolist()
    assert result.stdout.count(polarity) == 4
    # the same digit as the plain greyscale image gives the same network input
    plain, _ = to_mnist(mnist.test_images[0].float() / 255)
    seen, _ = to_mnist(read_image(files[0]))
    assert (seen.float() - plain.float()).abs().max() <= 2


def test_a_palette_image_with_a_transparent_index_is_read(tmp_path, mnist):
    grey = Image.fromarray((255 - mnist.test_images[0]).numpy())  # dark ink on white
    pal = grey.convert("P")
    pal.info["transparency"] = pal.getpixel((0, 0))  # the white background transparent
    path = tmp_path / "pal.png"
    pal.save(path, transparency=pal.getpixel((0, 0)))
    image = read_image(path)
    assert image.shape == (28, 28) and float(image[0, 0]) == 1.0 and float(image.min()) < 0.1


# --- a directory ---

def test_a_directory_is_named_as_one(tmp_path, mnist):
    released()
    folder = tmp_path / "scans"
    folder.mkdir()
    good = write_png(tmp_path / "good.png", mnist.test_images[0])
    result = run_predict(folder, good)
    assert result.exit_code == 1
    assert f"{folder}: is a directory" in result.stderr and "no such file" not in result.output
    assert predicted(result.stdout, good) == int(mnist.test_labels[0])


# --- a shaded background ---

def shaded(digit, dark_ink, shape=(110, 140), at=(30, 70)):
    """An MNIST digit (uint8 28x28) on a linear grey gradient, as ink on paper (or light on a dark screen)."""
    h, w = shape
    ys, xs = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    ink = torch.zeros(h, w)
    ink[at[0]:at[0] + 28, at[1]:at[1] + 28] = digit.float() / 255
    if dark_ink:
        background = 0.45 + 0.4 * xs + 0.15 * ys  # 0.45 .. 1.0
        return background * (1 - ink)
    background = 0.05 + 0.3 * xs + 0.2 * ys  # 0.05 .. 0.55
    return background + (1 - background) * ink


def box(field, level=50):
    rows = (field > level).any(1).nonzero().flatten()
    cols = (field > level).any(0).nonzero().flatten()
    return int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])


@pytest.mark.parametrize("dark_ink", [True, False])
def test_a_shaded_background_is_removed_before_cropping(mnist, dark_ink):
    for i in range(4):
        digit = mnist.test_images[i]
        on_gradient, polarity = to_mnist(shaded(digit, dark_ink))
        plain, _ = to_mnist(digit.float() / 255)
        assert polarity.startswith("dark" if dark_ink else "light")
        assert all(abs(a - b) <= 1 for a, b in zip(box(on_gradient), box(plain)))  # cropped to the digit
        closest = min(float((torch.roll(on_gradient.float(), (dy, dx), (0, 1)) - plain.float()).abs().mean())
                      for dy in (-1, 0, 1) for dx in (-1, 0, 1))  # centring may round one pixel apart
        assert closest < 4  # grey levels of 255, per pixel


def test_a_vignette_and_ink_touching_the_edges(mnist):
    """The quadratic term of the background, and ink on the border left out of its fit."""
    digit = mnist.test_images[0]
    plain, _ = to_mnist(digit.float() / 255)
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, 120), torch.linspace(-1, 1, 120), indexing="ij")
    paper = 1.0 - 0.45 * (xs ** 2 + ys ** 2) / 2  # bright centre, corners 0.55
    ink = torch.zeros(120, 120)
    ink[46:74, 46:74] = digit.float() / 255
    vignette, polarity = to_mnist(paper * (1 - ink))
    assert polarity.startswith("dark") and all(abs(a - b) <= 1 for a, b in zip(box(vignette), box(plain)))
    for i in range(4):  # cropped to the ink's bounding box: strokes on all four edges
        x = mnist.test_images[i].float() / 255
        rows, cols = (x > 0.1).any(1).nonzero().flatten(), (x > 0.1).any(0).nonzero().flatten()
        tight = x[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
        for image in (tight, 1 - tight):
            a, _ = to_mnist(image)
            b, _ = to_mnist(x)
            assert all(abs(p - q) <= 1 for p, q in zip(box(a), box(b)))


def test_a_digit_on_a_gradient_is_predicted(tmp_path, mnist):
    released()
    files = []
    for i in range(6):
        image = shaded(mnist.test_images[i], dark_ink=i % 2 == 0)
        files.append(write_png(tmp_path / f"g{i}.png", (image * 255).round().to(torch.uint8)))
    result = run_predict(*files)
    assert result.exit_code == 0, result.output
    assert [predicted(result.stdout, f) for f in files] == mnist.test_labels[:6].tolist()


def test_a_bare_gradient_is_blank(tmp_path):
    image = shaded(torch.zeros(28, 28, dtype=torch.uint8), dark_ink=True)
    with pytest.raises(data_module.NoDigit, match="blank"):
        to_mnist(image)


# --- the class posteriors of Eq. (9) ---

def test_posteriors_sum_to_one_and_rank_like_the_penalties():
    from lenet1998.loss import posteriors

    torch.manual_seed(0)
    penalties = torch.rand(5, 3, 10) * 30  # (N, K, 10)
    for name in ("map", "mle"):
        probs, none = posteriors(penalties, name, 10.0)
        assert probs.shape == (5, 3, 10) and none.shape == (5, 3)
        assert torch.allclose(probs.sum(-1) + none, torch.ones(5, 3), atol=1e-6)
        assert torch.equal(probs.argsort(-1, descending=True), penalties.argsort(-1))
    _, none = posteriors(penalties, "mle", 10.0)
    assert torch.equal(none, torch.zeros(5, 3))
    probs, none = posteriors(torch.tensor([3.0, 100, 100, 100, 100, 100, 100, 100, 100, 100]), "map", 3.0)
    assert float(none) == pytest.approx(0.5, abs=1e-6) and float(probs[0]) == pytest.approx(0.5, abs=1e-6)


def test_posteriors_of_a_linear_output_are_its_softmax():
    from lenet1998.loss import posteriors

    logits = torch.randn(4, 10)
    probs, none = posteriors(logits, "cross_entropy", None)
    assert torch.allclose(probs, torch.softmax(logits, -1)) and torch.equal(none, torch.zeros(4))


def test_posteriors_are_stable_for_large_penalties():
    from lenet1998.loss import posteriors

    penalties = torch.tensor([1e3, 1e3 + 1, 1e3 + 2, 1e3 + 5, 2e3, 1e4, 1e3 + 3, 1e3 + 4, 1e3 + 6, 1e3 + 7])
    for name, j in (("map", 1e3 + 0.5), ("mle", 10.0), ("map", 10.0)):
        probs, none = posteriors(penalties, name, j)
        assert torch.isfinite(probs).all() and torch.isfinite(none)
        assert float(probs.sum() + none) == pytest.approx(1.0, abs=1e-6)
    probs, none = posteriors(penalties, "mle", 10.0)
    assert float(probs[0]) == pytest.approx(1 / float(torch.exp(-torch.arange(8.0)).sum()), rel=1e-4)
    probs, none = posteriors(penalties, "map", 10.0)  # every class far beyond j: all "none of these"
    assert float(none) == pytest.approx(1.0) and float(probs.max()) < 1e-30


# --- machine-readable output ---

def batch(tmp_path, mnist):
    good = [write_png(tmp_path / f"d{i}.png", mnist.test_images[i]) for i in range(3)]
    blank = write_png(tmp_path / "blank.png", torch.full((28, 28), 255, dtype=torch.uint8))
    return good, blank, str(tmp_path / "missing.png")


def test_csv_output_parses_back(tmp_path, mnist):
    released()
    good, blank, missing = batch(tmp_path, mnist)
    result = run_predict(*good, blank, missing, "--format", "csv")
    assert result.exit_code == 1, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["file"] for r in rows] == [*good, blank, missing]
    for row, label in zip(rows[:3], mnist.test_labels[:3].tolist()):
        assert int(row["predicted"]) == label and row["error"] == ""
        scores = [float(row[f"score_{i}"]) for i in range(10)]
        probs = [float(row[f"prob_{i}"]) for i in range(10)]
        assert min(range(10), key=scores.__getitem__) == label == max(range(10), key=probs.__getitem__)
        assert sum(probs) + float(row["none"]) == pytest.approx(1.0, abs=1e-5)
    assert rows[3]["no_digit"] == "blank image" and rows[3]["error"] == "" and "no such file" in rows[4]["error"]
    assert rows[3]["predicted"] == "" and rows[4]["score_0"] == ""
    assert len(result.stderr.splitlines()) == 1  # the error also on stderr, one line; "no digit" is an answer


def test_json_output_parses_back(tmp_path, mnist):
    released()
    good, blank, missing = batch(tmp_path, mnist)
    result = run_predict(*good, blank, missing, "--format", "json")
    assert result.exit_code == 1, result.output
    records = json.loads(result.stdout)
    assert [r["file"] for r in records] == [*good, blank, missing]
    for record, label in zip(records[:3], mnist.test_labels[:3].tolist()):
        assert record["predicted"] == label and record["error"] is None
        assert len(record["scores"]) == len(record["probabilities"]) == 10
        assert sum(record["probabilities"]) + record["none"] == pytest.approx(1.0, abs=1e-5)
        assert record["polarity"] == "light ink on dark background"
    assert records[3]["no_digit"] == "blank image" and records[3]["error"] is None and records[3]["predicted"] is None
    assert records[4]["scores"] is None and "no such file" in records[4]["error"]


def test_text_output_gives_the_probabilities_beside_the_penalties(tmp_path, mnist):
    released()
    good = write_png(tmp_path / "d0.png", mnist.test_images[0])
    result = run_predict(good)
    assert result.exit_code == 0, result.output
    line = result.stdout.strip()
    assert "RBF penalties" in line and "probabilities" in line and "none" in line
    label = int(mnist.test_labels[0])
    probs = line.split("probabilities: ")[1]
    assert f"{label}:0.99" in probs


# --- the data folder ---

@pytest.fixture
def tiny_mnist(tmp_path, monkeypatch):
    """Tiny IDX files in tmp_path/store/MNIST/raw, with their checksums made the expected ones."""
    sums = write_idx(tmp_path / "store" / "MNIST" / "raw")
    monkeypatch.setattr(data_module, "MNIST_FILES", sums)
    monkeypatch.setattr(data_module.check_files, "__defaults__", (sums,))
    monkeypatch.delenv("LENET1998_DATA", raising=False)
    return tmp_path / "store"


def tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("given", ["", "MNIST", "MNIST/raw"])
def test_the_data_folder_may_be_the_parent_mnist_or_raw(tiny_mnist, given):
    before = tree(tiny_mnist)
    folder = tiny_mnist / given if given else tiny_mnist
    assert resolve_data_dir(folder) == tiny_mnist
    loaded = load_mnist(folder)  # download allowed: nothing is missing, so nothing is fetched
    assert loaded.train_images.shape == (5, 28, 28)
    assert tree(tiny_mnist) == before  # no MNIST/raw/MNIST/raw


def no_network(monkeypatch):
    import torchvision

    monkeypatch.setattr(torchvision.datasets.MNIST, "mirrors", ["http://127.0.0.1:9/"])  # fails at once


@pytest.mark.parametrize("exists", [False, True])
def test_a_wrong_data_folder_is_an_error_and_nothing_is_created(tmp_path, monkeypatch, exists):
    no_network(monkeypatch)
    wrong = tmp_path / "nowhere"
    if exists:
        wrong.mkdir()
    with pytest.raises(DataError) as e:
        load_mnist(wrong)  # download allowed, as train and bench call it
    message = str(e.value)
    assert str(wrong) in message and "--data-dir" in message
    assert wrong.exists() == exists and (not exists or not any(wrong.iterdir()))


def test_the_raw_folder_given_with_files_missing_creates_nothing(tiny_mnist, monkeypatch):
    no_network(monkeypatch)
    raw = tiny_mnist / "MNIST" / "raw"
    (raw / "t10k-labels-idx1-ubyte").unlink()
    before = tree(tiny_mnist)
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte"):
        load_mnist(raw)
    assert tree(tiny_mnist) == before


def test_a_wrong_data_folder_from_the_environment_is_an_error(tmp_path, monkeypatch):
    no_network(monkeypatch)
    monkeypatch.setenv("LENET1998_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="LENET1998_DATA"):
        load_mnist()
    assert not (tmp_path / "nowhere").exists()


def test_a_wrong_data_dir_on_the_command_line_is_one_line(tmp_path, monkeypatch):
    no_network(monkeypatch)
    monkeypatch.delenv("LENET1998_DATA", raising=False)
    wrong = tmp_path / "nowhere"
    result = CliRunner().invoke(train, ["--data-dir", str(wrong), "--out", str(tmp_path / "runs"), "--epochs", "1"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and len(result.stderr.strip().splitlines()) == 1
    assert str(wrong) in result.stderr and "--data-dir" in result.stderr
    assert not wrong.exists()
