"""MNIST, checked and coded as the paper's input.

Paper: Sec. II-B (input coding), Sec. III-A (the database).

Input coding ("paper"): "the background level (white) corresponds to a value of -0.1 and the
foreground (black) corresponds to 1.175"; MNIST bytes p (0 = white, 255 = black) become
x = -0.1 + 1.275 p / 255, and the 28x28 images are padded to 32x32 with background pixels
(-0.1), never resized. The modern coding ("unit") is p / 255 padded with zeros.

The data folder is the one given, else $LENET1998_DATA, else ./data; the four raw IDX files lie
in <folder>/MNIST/raw/ as torchvision expects (a named folder may also be MNIST/ or MNIST/raw/
itself). Missing files are downloaded by torchvision, where the network allows, only into the
default ./data: a folder the user named must hold them, and nothing is created in it. Every
file is checked against its known MD5 before use.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from .registry import Registry

MNIST_FILES = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
BACKGROUND, FOREGROUND = -0.1, 1.175  # Sec. II-B
PAD = 2  # 28x28 -> 32x32


class DataError(RuntimeError):
    """MNIST is missing or corrupt; the message names the folder and the files."""


@dataclass
class MNIST:
    """Raw MNIST in memory: uint8 images (N, 28, 28) and int64 labels (N,)."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor


def resolve_data_dir(data_dir=None) -> Path:
    """The root folder for torchvision: the one whose MNIST/raw/ holds (or will hold) the files.

    The folder given, else $LENET1998_DATA, else ./data. A folder the user named may be that
    root, its MNIST/ folder or the MNIST/raw/ folder itself; this only reads, never creates.
    """
    given = Path(data_dir or os.environ.get("LENET1998_DATA") or "data")
    if (given / "MNIST" / "raw").is_dir():
        return given
    if given.name == "MNIST" and (given / "raw").is_dir():
        return given.parent
    if given.name == "raw" and given.parent.name == "MNIST" and given.is_dir():
        return given.parent.parent
    return given


def _user_named(data_dir) -> str | None:
    """How the user named the data folder ('--data-dir', 'LENET1998_DATA'), or None for the default."""
    if data_dir:
        return "--data-dir"
    if os.environ.get("LENET1998_DATA"):
        return "LENET1998_DATA"
    return None


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_files(root: Path, checksums=MNIST_FILES) -> None:
    """Raise DataError unless every raw file exists under root/MNIST/raw with its MD5."""
    raw = Path(root) / "MNIST" / "raw"
    missing = [name for name in checksums if not (raw / name).is_file()]
    if missing:
        raise DataError(
            f"MNIST not found in {raw}: missing {', '.join(missing)}. Put the four files "
            f"{', '.join(checksums)} there, or pass --data-dir / set LENET1998_DATA."
        )
    for name, md5 in checksums.items():
        if _md5(raw / name) != md5:
            raise DataError(f"{raw / name} is corrupt or truncated (MD5 differs from {md5}); replace it.")


def load_mnist(data_dir=None, download=True) -> MNIST:
    """Load the four MNIST files into tensors.

    Missing files are downloaded (if allowed) only into the default ./data; a folder the user
    named (data_dir or $LENET1998_DATA) must already hold them, and nothing is created in it:
    a folder without MNIST is a DataError naming it and saying what to pass.
    """
    root = resolve_data_dir(data_dir)
    raw = root / "MNIST" / "raw"
    named = _user_named(data_dir)
    if named and not raw.is_dir():
        given = Path(data_dir or os.environ["LENET1998_DATA"])
        what = "does not exist" if not given.exists() else "holds no MNIST"
        if any((given / name).is_file() for name in MNIST_FILES):
            what = "holds MNIST files but not in the MNIST/raw/ layout torchvision reads; move them"
        raise DataError(
            f"MNIST not found: {named} {given} {what}; expected the files {', '.join(MNIST_FILES)} in "
            f"{given / 'MNIST' / 'raw'}. {'Pass --data-dir' if named == '--data-dir' else 'Set LENET1998_DATA to'} "
            f"the folder that holds MNIST/raw/ (or MNIST/ or MNIST/raw/ itself); without --data-dir and "
            f"LENET1998_DATA, MNIST is downloaded into ./data."
        )
    if download and not named and not all((raw / name).is_file() for name in MNIST_FILES):
        try:
            import torchvision

            torchvision.datasets.MNIST(str(root), train=True, download=True)
        except Exception:  # no network, unwritable folder: the check below names the files
            pass
    check_files(root)
    import torchvision

    try:
        train = torchvision.datasets.MNIST(str(root), train=True, download=False)
        test = torchvision.datasets.MNIST(str(root), train=False, download=False)
    except Exception as e:
        raise DataError(f"could not read MNIST from {raw}: {e}") from None
    return MNIST(train.data, train.targets.long(), test.data, test.targets.long())


def ink(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 28, 28) -> float32 ink (N, 32, 32) in [0, 1], padded with background 0."""
    p = images.to(torch.get_default_dtype()) / 255.0
    return torch.nn.functional.pad(p, (PAD, PAD, PAD, PAD), value=0.0)  # (N, 32, 32)


def paper_coding(ink32: torch.Tensor) -> torch.Tensor:
    """Sec. II-B: background (white) -0.1, foreground (black) 1.175, padding included."""
    return BACKGROUND + (FOREGROUND - BACKGROUND) * ink32


def unit_coding(ink32: torch.Tensor) -> torch.Tensor:
    """Pixels in [0, 1], padded with 0 (the modern coding; not the paper)."""
    return ink32


# The authors' code (demos/lenet5.lsh in Lush 2's gblearn2, demos/mnist/src/main.cpp in EBLearn
# 2009): each byte times 0.01, so background and padding 0 and full ink 2.55 (SPEC.md section 15).
LAB_INK = 2.55


def lab_coding(ink32: torch.Tensor) -> torch.Tensor:
    """The authors' code: pixel x 0.01, background and padding 0, full ink 2.55 (not the paper's text)."""
    return LAB_INK * ink32


INPUT_CODING = Registry("input_coding", {"paper": paper_coding, "unit": unit_coding, "lab": lab_coding})


def code(ink32: torch.Tensor, coding: str = "paper") -> torch.Tensor:
    """Ink in [0, 1] (background 0) -> the network's input values (INPUT_CODING[coding])."""
    return INPUT_CODING[coding](ink32)


def encode(images: torch.Tensor, coding: str = "paper") -> torch.Tensor:
    """uint8 (N, 28, 28) -> float32 (N, 32, 32) as the network's input (see module docstring)."""
    return code(ink(images), coding)  # (N, 32, 32)


class ImageError(ValueError):
    """An image file that cannot be read."""


class NoDigit(ValueError):
    """An image that was read but holds no digit to recognise (blank, or too small); an answer, not a failure."""


# The smallest image, and the smallest ink bounding box (its longer side), that can hold a digit:
# MNIST's digits fill a 20x20 box, and a digit of fewer than 8 pixels a side would be scaled up
# more than 2.5 times from almost no strokes.
MIN_DIGIT_PIXELS = 8


def read_image(path) -> torch.Tensor:
    """A digit image file (PNG, JPEG, ...) as greyscale float32 (H, W) in [0, 1], 1 = white.

    The image is turned upright by its EXIF orientation tag (a phone's JPEG). Colour becomes
    grey; 16-bit and 32-bit integer greys are scaled by 65,535 (a 32-bit image whose values
    exceed it, by 2^32 - 1), and float greys are taken as they are in [0, 1], else stretched
    from their own minimum to maximum. Transparency (RGBA, LA, a palette's transparent index) is composited
    onto the inverse of the ink: the ink colour is the alpha-weighted mean grey, and the
    background becomes white under dark ink, black under light ink, whatever colour the
    transparent pixels carry. Every failure to read (no file, a directory, not an image, a
    truncated file, an image over PIL's decompression-bomb limit, Image.MAX_IMAGE_PIXELS) is an
    ImageError naming the file.
    """
    from PIL import Image, ImageOps

    path = Path(path)
    if path.is_dir():
        raise ImageError(f"{path}: is a directory (give the image files, e.g. {path}/*.png)")
    if not path.is_file():
        raise ImageError(f"{path}: no such file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # over the limit: refuse, not warn
            with Image.open(path) as opened:
                im = ImageOps.exif_transpose(opened)  # upright, as a viewer shows it
                has_alpha = im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info
                if has_alpha:
                    im = im.convert("RGBA")
                    alpha = _as_tensor(im.getchannel("A"))
                grey = _high_depth_grey(im) if im.mode in HIGH_DEPTH else _as_tensor(im.convert("L"))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"{path}: too large to read safely ({_first_line(e)})") from None
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError) as e:  # PIL's errors on bad files
        raise ImageError(f"{path}: not a readable image ({e.__class__.__name__}: {_first_line(e)})") from None
    if has_alpha and bool((alpha < 1).any()):
        weight = alpha.sum()
        if weight == 0:  # fully transparent: nothing drawn
            return torch.ones_like(grey)
        background = 1.0 if float((alpha * grey).sum() / weight) < 0.5 else 0.0
        grey = alpha * grey + (1 - alpha) * background
    return grey


# PIL modes of one band deeper than 8 bits: integers of 16 or 32 bits, and 32-bit floats.
HIGH_DEPTH = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def _high_depth_grey(image) -> torch.Tensor:
    """A 16/32-bit integer or float greyscale PIL image -> float32 (H, W) in [0, 1] (read_image)."""
    import numpy as np

    a = torch.from_numpy(np.asarray(image).astype(np.float64))
    if image.mode == "F":
        low, high = float(a.min()), float(a.max())
        if not (low >= 0 and high <= 1):
            a = (a - low) / (high - low) if high > low else torch.zeros_like(a)
    else:
        a = a / (65535.0 if float(a.max()) <= 65535 else 2.0**32 - 1)
    return a.clamp(0, 1).to(torch.float32)


def _first_line(error) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else ""


def _as_tensor(image) -> torch.Tensor:
    """A PIL image of one 8-bit band -> float32 (H, W) in [0, 1]."""
    data = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8).view(image.height, image.width)
    return data.to(torch.float32) / 255.0


def border_background(image: torch.Tensor, rounds: int = 4) -> torch.Tensor:
    """A smooth estimate of the background of a greyscale image (H, W), from its border pixels
    (background, as in to_mnist): the simplest of a constant level, a plane a + bx + cy and a
    quadratic surface (+ dx^2 + exy + fy^2) that fits the border nearly as well as the quadratic
    (within 0.01 RMS), by least squares. A flat background gives its level; a linear gradient or
    a vignette is followed exactly; shading of higher order only in part. Ink on the border is
    left out: first the pixels far from the border's median, then those far from the fit; a
    surface that leaves the image's own range of values (ink pulled it) gives way to a simpler one.
    """
    h, w = image.shape
    y = torch.linspace(-1, 1, h, dtype=torch.float64)[:, None]  # (H, 1)
    x = torch.linspace(-1, 1, w, dtype=torch.float64)[None, :]  # (1, W)
    on_border = torch.zeros(h, w, dtype=torch.bool)
    on_border[0] = on_border[-1] = on_border[:, 0] = on_border[:, -1] = True
    terms = [torch.ones(h, w, dtype=torch.float64), x.expand(h, w), y.expand(h, w), (x * x).expand(h, w),
             x * y, (y * y).expand(h, w)]
    basis = torch.stack([t[on_border] for t in terms], -1)  # (B, 6): 1, x, y, x^2, xy, y^2
    values = image[on_border].to(torch.float64)  # (B,)

    def fit(n, keep):  # least squares on the first n terms -> (coefficients (n,), RMS misfit)
        a = basis[keep][:, :n]
        c = torch.linalg.lstsq(a, values[keep, None]).solution[:, 0]
        return c, float((values[keep] - a @ c).pow(2).mean().sqrt())

    deviation = (values - values.median()).abs()
    keep = deviation <= max(0.1, 3 * float(deviation.median()))  # the border's majority level (and its shading)
    order = 1
    for _ in range(rounds):
        fits = {n: fit(n, keep) for n in (1, 3, 6) if int(keep.sum()) >= 3 * n}
        best = min(rms for _, rms in fits.values())
        order = min(n for n, (_, rms) in fits.items() if rms <= best + 0.01)  # the simplest that fits nearly as well
        misfit = (values - basis[:, :order] @ fits[order][0]).abs()
        new_keep = misfit <= max(0.05, 3 * float(misfit[keep].median()))
        if torch.equal(new_keep, keep) or int(new_keep.sum()) < 3:
            break
        keep = new_keep

    x, y = x.to(torch.float32), y.to(torch.float32)
    low, high = float(image.min()) - 0.05, float(image.max()) + 0.05
    for n in (6, 3, 1):
        if n <= order:
            c = fit(n, keep)[0].to(torch.float32).tolist() + [0.0] * (6 - n)
            surface = c[0] + (c[1] * x + c[3] * x * x) + (c[2] * y + c[5] * y * y) + c[4] * x * y  # (H, W)
            if n == 1 or (low <= float(surface.min()) and float(surface.max()) <= high):
                return surface
    raise AssertionError("unreachable: the constant level is always returned")


def to_mnist(image: torch.Tensor, name: str = "image"):
    """Any greyscale digit (H, W) in [0, 1] -> (MNIST-style uint8 28x28, polarity found).

    As MNIST was made (Sec. III-A): ink made light-on-dark, the digit cropped to its bounding
    box, scaled to fit a 20x20 box keeping its aspect ratio, and centred by its centre of mass
    in 28x28. The background, taken from the border (a flat level, or shading such as a
    gradient: border_background), is subtracted first; the ink is what stands out of it, and
    its polarity is the side it stands out most (darker: dark ink on a light background).
    """
    h, w = image.shape
    if min(h, w) < MIN_DIGIT_PIXELS:
        raise NoDigit(f"image too small: {w}x{h}")
    residual = image - border_background(image)  # (H, W); background ~ 0
    dark = float(-residual.min()) > float(residual.max())
    polarity = "dark ink on light background" if dark else "light ink on dark background"
    ink_map = (-residual if dark else residual).clamp(min=0)
    if ink_map.max() < 0.1:
        raise NoDigit("blank image")
    ink_map = ink_map / ink_map.max()
    rows = (ink_map > 0.2).any(1).nonzero().flatten()
    cols = (ink_map > 0.2).any(0).nonzero().flatten()
    crop = ink_map[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    h, w = crop.shape
    if max(h, w) < MIN_DIGIT_PIXELS:
        raise NoDigit(f"ink too small: {w}x{h} pixels")
    scale = 20.0 / max(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    small = torch.nn.functional.interpolate(crop[None, None], size=size, mode="bilinear", antialias=True,
                                            align_corners=False)[0, 0].clamp(0, 1)
    field = torch.zeros(28, 28)
    top, left = (28 - size[0]) // 2, (28 - size[1]) // 2
    field[top:top + size[0], left:left + size[1]] = small
    mass = field.sum()
    cy = float((field.sum(1) * torch.arange(28.0)).sum() / mass)
    cx = float((field.sum(0) * torch.arange(28.0)).sum() / mass)
    dy, dx = round(13.5 - cy), round(13.5 - cx)  # move the centre of mass to the field's centre
    field = torch.roll(field, shifts=(dy, dx), dims=(0, 1))
    return (field * 255).round().to(torch.uint8), polarity
