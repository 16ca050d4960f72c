"""Run a trained LeNet-5 on your own digit images.

    python -m experiments.predict my_digit.png another.jpg
    python -m experiments.predict --variant modern --show out/ my_digit.png
    python -m experiments.predict --checkpoint results/runs/<hash>/checkpoint.pt digit.png

Each image is made MNIST-like (lenet1998/data.py `to_mnist`: polarity detected, cropped,
scaled into 20x20, centred by its centre of mass in 28x28), padded to 32x32 and coded as the
model's config says. Prints the predicted digit and the ten scores: RBF penalties (smallest
wins) or softmax probabilities (linear output). An image that cannot be used gets one line
on stderr; the others are still processed, and the exit code is 1.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
import torch

from lenet1998.data import ImageError, encode, read_image, to_mnist
from lenet1998.results import check_writable, load_pretrained, load_trained

from .common import DEVICES, one_line_errors, resolve_device


def save_preview(path: Path, digit: torch.Tensor, scores: torch.Tensor, kind: str, predicted: int):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(6, 2.6), gridspec_kw={"width_ratios": [1, 1.6]})
    a.imshow(digit.numpy(), cmap="gray_r")
    a.set(xticks=[], yticks=[], title="network input (32x32)")
    b.bar(range(10), scores.numpy(), color=["C3" if i == predicted else "C0" for i in range(10)])
    b.set(xticks=range(10), title=kind)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


@click.command()
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--variant", default="paper", show_default=True, help="A released model (results/released/).")
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None, help="Any checkpoint.pt instead.")
@click.option("--show", type=click.Path(file_okay=False), default=None, help="Write <image>.pred.png previews here.")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True)
@one_line_errors
def main(images, variant, checkpoint, show, device):
    """Predict the digit in each image file."""
    model = load_trained(checkpoint) if checkpoint else load_pretrained(variant)
    device = resolve_device(device)
    model = model.to(device)
    if show:
        check_writable(show)
    rbf = model.config.output == "rbf"
    kind = "RBF penalties (smallest wins)" if rbf else "softmax probabilities"
    failures = 0
    for path in images:
        try:
            digit, polarity = to_mnist(read_image(path), path)
        except ImageError as e:
            click.echo(f"error: {e}", err=True)
            failures += 1
            continue
        x = encode(digit[None], model.config.input_coding).to(device)  # (1, 32, 32)
        with torch.no_grad():
            out = model(x.unsqueeze(1))[0, 0].cpu()  # (10,)
        scores = out if rbf else torch.softmax(out, -1)
        predicted = int(out.argmin() if rbf else out.argmax())
        click.echo(f"{path}: {predicted}   ({polarity}; {kind}: "
                   + " ".join(f"{i}:{v:.3g}" for i, v in enumerate(scores.tolist())) + ")")
        if show:
            save_preview(Path(show) / f"{Path(path).name}.pred.png", x[0].cpu(), scores, kind, predicted)
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
