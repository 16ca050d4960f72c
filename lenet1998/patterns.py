"""How the training patterns of one run are presented: their order, the h_kk sample, the
distortion pool, all drawn from generators that depend only on (seed, stream, pass).

Paper: Appendix C ("the patterns are presented in a constant random order"; h_kk re-estimated
on 500 patterns before each pass) and Sec. III-C (60,000 originals + 540,000 distorted).

Registries declared here: `ORDER` ("fixed": one permutation for every pass, as the paper;
"reshuffle": a new one each pass; "file": the training file's own order, never shuffled, as
the authors' code presents them: Lush 2's demos/lenet5.lsh and EBLearn 2009's
demos/mnist/src/main.cpp step through the data source in order) and `DISTORTIONS` ("none", or "affine": a pass is n patterns
drawn without replacement from the pool of 10 n, lenet1998/distortions.py).

Validation split (not in the paper; LeNetConfig.val_size): the last val_size patterns of the
training set are held out, the run trains on the first train_size of the others, and its h_kk
sample and distortion pool come from those training patterns alone.
"""

from __future__ import annotations

import torch

from .data import code, encode, ink
from .distortions import POOL_FACTOR, DistortionPool
from .registry import ConfigError, Registry

# Streams of per-seed random numbers, so that no two uses share a generator.
STREAM_ORDER, STREAM_HESSIAN, STREAM_DISTORTIONS, STREAM_POOL = 1, 2, 3, 4
# New distorted patterns for boosted LeNet-4's filters, and the coins of net 2's mix (lenet1998/boosting.py).
STREAM_CANDIDATES, STREAM_COINS = 5, 6


def generator(seed: int, stream: int, pass_number: int = 0) -> torch.Generator:
    """A generator that depends only on (seed, stream, pass): runs resume exactly."""
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + stream * 10_007 + pass_number)


# The pass number that seeds a pass's permutation; None: no permutation, the file's order.
ORDER = Registry("order", {"fixed": lambda pass_number: 0, "reshuffle": lambda pass_number: pass_number,
                           "file": lambda pass_number: None})

# Which patterns estimate h_kk before a pass (LeNetConfig.sdlm_sample): "random", a fresh random
# sdlm_samples of the training patterns per pass (Appendix C does not say which); "first", the
# first sdlm_samples of the training file, as EBLearn's 2009 MNIST demo (demos/mnist/src/main.cpp).
HESSIAN_SAMPLE = Registry("sdlm_sample", {"random": True, "first": False})

# The pool a pass draws from: None (the n originals) or a DistortionPool built from the originals.
DISTORTIONS = Registry("distortions", {"none": None, "affine": DistortionPool})


def pattern_order(config, n: int, pass_number: int) -> torch.Tensor:
    """The indices of the n patterns of a pass: a permutation of the training set, or with
    distortions n pool indices drawn without replacement from the pool of 10 n."""
    if DISTORTIONS[config.distortions] is not None:
        return torch.randperm(POOL_FACTOR * n, generator=generator(config.seed, STREAM_POOL, pass_number))[:n]
    seed_pass = ORDER[config.order](pass_number)
    if seed_pass is None:
        return torch.arange(n)
    return torch.randperm(n, generator=generator(config.seed, STREAM_ORDER, seed_pass))


class TrainingPatterns:
    """The training set of one run as its network reads it: coded images and labels."""

    def __init__(self, config, data, device="cpu", images=None):
        """images: the coded training images, if already made (runs of one coding share them)."""
        self.config, self.n, self.device = config, config.train_size, device
        validation_range(config, data)  # the training patterns lie before the held-out ones
        if images is None:
            images = encode(data.train_images[:self.n], config.input_coding).to(device)
        self.images = images  # (n, 32, 32)
        self.labels = data.train_labels[:self.n].to(device)  # (n,)
        pool = DISTORTIONS[config.distortions]
        self.pool = None if pool is None else pool(ink(data.train_images[:self.n]),
                                                   generator(config.seed, STREAM_DISTORTIONS), config.distortion_scale)

    def order(self, pass_number: int) -> torch.Tensor:
        return pattern_order(self.config, self.n, pass_number).to(self.device)

    def patterns(self, index: torch.Tensor) -> torch.Tensor:
        """Coded patterns (B, 32, 32) of training-set or pool indices (B,)."""
        if self.pool is None:
            return self.images[index]
        return code(self.pool.patterns(index), self.config.input_coding).to(self.device)

    def targets(self, index: torch.Tensor) -> torch.Tensor:
        return self.labels[index % self.n]  # a distorted copy has its original's label

    def hessian_sample(self, pass_number: int) -> torch.Tensor:
        """The coded originals (m, 32, 32) on which h_kk is estimated before a pass."""
        m = min(self.config.sdlm_samples, self.n)
        if not HESSIAN_SAMPLE[self.config.sdlm_sample]:
            return self.images[:m]
        index = torch.randperm(self.n, generator=generator(self.config.seed, STREAM_HESSIAN, pass_number))[:m]
        return self.images[index.to(self.device)]


def validation_range(config, data) -> range:
    """The indices of the held-out patterns in the training set: its last val_size (empty for 0).
    ConfigError if the first train_size patterns would reach them (a training set shorter than 60,000)."""
    total = len(data.train_labels)
    if config.train_size > total - config.val_size:
        raise ConfigError(f"train_size={config.train_size} and val_size={config.val_size} need "
                          f"{config.train_size + config.val_size} training patterns; the data has {total}")
    return range(total - config.val_size, total)


def validation_images(config, data, device="cpu"):
    """The held-out patterns (val_size, 32, 32) coded for `config`, and their labels; None if val_size is 0."""
    held_out = validation_range(config, data)
    if not len(held_out):
        return None
    images = data.train_images[held_out.start:held_out.stop]
    return encode(images, config.input_coding).to(device), data.train_labels[held_out.start:held_out.stop].to(device)


def test_images(config, data, device="cpu"):
    """The 10,000 test images coded for `config`, and their labels."""
    return encode(data.test_images, config.input_coding).to(device), data.test_labels.to(device)
