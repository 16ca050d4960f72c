"""Run a trained LeNet-5 on your own digit images.

    python -m experiments.predict my_digit.png another.jpg
    python -m experiments.predict --variant modern --show out/ my_digit.png
    python -m experiments.predict --checkpoint results/runs/<hash>/checkpoint.pt digit.png
    python -m experiments.predict --format csv scans/*.png > predictions.csv

Each image is made MNIST-like (lenet1998/data.py `read_image`, `to_mnist`: transparency
composited, the background taken from the border (a flat level or shading) and subtracted,
polarity detected, cropped, scaled into 20x20, centred by its centre of mass in 28x28), padded
to 32x32 and coded as the model's config says. Prints the predicted digit, the ten scores (RBF
penalties, smallest wins, or a linear output's softmax) and, for RBF models, the class
probabilities the training criterion implies (lenet1998/loss.py `posteriors`): with MAP,
Eq. (9)'s "none of these" mass beside them.

"No digit" is an answer, with its reason: an image too small to hold a digit (under 8 pixels
on a side, or ink whose bounding box is under 8 pixels on its longer side: lenet1998/data.py
MIN_DIGIT_PIXELS), a blank one, or, for a model trained by MAP (Eq. 9), one whose "none of
these" mass exceeds every class posterior: the criterion's own rejection, with no threshold
tuned. Models without that mass (MLE, softmax) always name a digit for a digit-sized image.

--format csv|json gives one record per image: file, predicted, no_digit (the reason, where there
is no digit), polarity, the ten scores (RBF penalties, or a linear output's logits), the ten
probabilities, none (numbers to 7 significant digits), and the error for an image that failed
(its other fields empty). JSON is a list, one record a line. An image that cannot be used (no
such file, a directory, not an image or a mode it cannot decode, too large) gets one line on
stderr; the others are still processed, and the exit code is 1. Directories are not expanded:
pass their files.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import click
import torch

from lenet1998.data import ImageError, NoDigit, encode, read_image, to_mnist
from lenet1998.loss import posteriors
from lenet1998.results import check_writable, load_pretrained, load_trained

from .common import command, DEVICES, one_line_errors, resolve_device


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


CSV_FIELDS = (["file", "predicted", "no_digit", "polarity"] + [f"score_{i}" for i in range(10)]
              + [f"prob_{i}" for i in range(10)] + ["none", "error"])


def csv_row(record: dict) -> str:
    """One record as a CSV line; a failed image leaves the numbers empty."""
    row = dict.fromkeys(CSV_FIELDS, "")
    for key in ("file", "predicted", "no_digit", "polarity", "none", "error"):
        row[key] = "" if record[key] is None else record[key]
    for name, values in (("score", record["scores"]), ("prob", record["probabilities"])):
        for i, v in enumerate(values or []):
            row[f"{name}_{i}"] = v
    buffer = io.StringIO()
    csv.DictWriter(buffer, CSV_FIELDS, lineterminator="\n").writerow(row)
    return buffer.getvalue()


def digits7(values: torch.Tensor):
    """float32 values as Python floats to 7 significant digits (the float32 precision), not 17."""
    out = [float(f"{v:.7g}") for v in values.flatten().tolist()]
    return out if values.dim() else out[0]


def text_line(record: dict, kind: str, rbf: bool) -> str:
    if record["shown"] is None:
        return f"{record['file']}: no digit ({record['no_digit']})"
    listed = " ".join(f"{i}:{v:.3g}" for i, v in enumerate(record["shown"]))
    answer = record["predicted"] if record["no_digit"] is None else f"no digit ({record['no_digit']})"
    line = f"{record['file']}: {answer}   ({record['polarity']}; {kind}: {listed}"
    if rbf:
        line += ("; probabilities: " + " ".join(f"{i}:{v:.3g}" for i, v in enumerate(record["probabilities"]))
                 + f"; none: {record['none']:.3g}")
    return line + ")"


@command()
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--variant", default="paper", show_default=True, help="A released model (results/released/).")
@click.option("--checkpoint", type=click.Path(), default=None,
              help="Any checkpoint.pt instead, or a run folder (what `train` prints) holding one.")
@click.option("--show", type=click.Path(file_okay=False), default=None, help="Write <image>.pred.png previews here.")
@click.option("--format", "fmt", type=click.Choice(["text", "csv", "json"]), default="text", show_default=True,
              help="text: a line per image; csv / json: one record per image (scores, probabilities, none, error).")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True)
@one_line_errors
def main(images, variant, checkpoint, show, fmt, device):
    """Predict the digit in each image file."""
    if checkpoint and Path(checkpoint).is_dir():  # a run folder: its checkpoint
        checkpoint = Path(checkpoint) / "checkpoint.pt"
    model = load_trained(checkpoint) if checkpoint else load_pretrained(variant)
    device = resolve_device(device)
    model = model.to(device)
    if show:
        check_writable(show)
    rbf = model.config.output in ("rbf", "targets")  # penalties: to the RBF codes, or to the +-1 targets
    loss_name = model.config.loss if rbf else "cross_entropy"
    kind = ("RBF penalties (smallest wins)" if model.config.output == "rbf" else
            "penalties to the +-1 targets (smallest wins)") if rbf else "softmax probabilities"
    if fmt == "csv":
        click.echo(",".join(CSV_FIELDS))
    records = []
    for path in images:
        record = dict(file=str(path), predicted=None, no_digit=None, polarity=None, scores=None, probabilities=None,
                      none=None, error=None)
        try:
            digit, polarity = to_mnist(read_image(path), path)
        except NoDigit as e:  # an answer: nothing to recognise
            record["no_digit"] = str(e)
            if fmt == "text":
                click.echo(text_line(dict(record, shown=None), kind, rbf))
        except (ImageError, OSError) as e:  # read_image names the file; OSError only if something slips past it
            message = str(e) if isinstance(e, ImageError) else f"{path}: {e}"
            click.echo(f"error: {message}", err=True)
            record["error"] = message
        else:
            x = encode(digit[None], model.config.input_coding).to(device)  # (1, 32, 32)
            with torch.no_grad():
                out = model(x.unsqueeze(1))[0].cpu()  # (10,)
            probs, none = posteriors(out, loss_name, model.config.map_j)  # (10,), ()
            predicted = int(model.predict(out[None])[0])  # the network's own rule (smallest penalty, largest logit)
            if float(none) > float(probs.max()):  # MAP's rubbish class outweighs every digit (Eq. 9)
                record["no_digit"] = f"none-of-these {float(none):.2f}"
            record.update(predicted=None if record["no_digit"] else predicted, polarity=polarity, scores=digits7(out),
                          probabilities=digits7(probs), none=digits7(none))
            shown = out if rbf else probs
            if show:
                save_preview(Path(show) / f"{Path(path).name}.pred.png", x[0].cpu(), shown, kind, predicted)
            if fmt == "text":
                click.echo(text_line(dict(record, shown=shown.tolist()), kind, rbf))
        if fmt == "csv":
            click.echo(csv_row(record), nl=False)
        records.append(record)
    if fmt == "json":  # a JSON list, one record a line
        click.echo("[\n" + ",\n".join(json.dumps(r) for r in records) + "\n]")
    if any(r["error"] for r in records):
        sys.exit(1)


if __name__ == "__main__":
    main()
