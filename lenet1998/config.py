"""The configuration of one LeNet-5 training run: one frozen dataclass whose defaults are the paper.

Paper: LeCun, Bottou, Bengio & Haffner (1998), Sec. II-B, II-C, III-B and Appendices A and C.

Each paper choice is one field whose value names the choice. Where the paper is ambiguous or
silent the default is our best reading, and REPRODUCING.md lists it under "Open questions":
`subsampling` (sum or average, Sec. II-A vs II-B), `init` (2.4/F_i vs 2.4/sqrt(F_i)),
`loss` (which criterion produced 0.95%), `map_j` (no value in the paper) and
`sdlm_output_curvature` (the second derivative that seeds the h_kk recursion).

Deviation: `init` defaults to "paper_sqrt" (U(+-2.4/sqrt(F_i))) and `subsampling` to
"trainable_average" (Sec. II-A). Read literally, U(+-2.4/F_i) leaves every SDLM step at the cap
eta/mu in the first passes and trains poorly (variant `literal_init`), and the Sec. II-B sum
costs about 2 points of test error (variant `sum_subsampling`); see REPRODUCING.md, "Open questions".
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass

# The paper's learning-rate schedule (Sec. III-B): (first pass of the stage, eta), passes from 1.
PAPER_ETA_SCHEDULE = ((1, 5e-4), (3, 2e-4), (6, 1e-4), (9, 5e-5), (13, 1e-5))

# The valid values of each choice field, in the order they are listed in error messages.
CHOICES = {
    "squashing": ("scaled_tanh", "tanh", "relu"),
    "subsampling": ("trainable_average", "trainable_sum", "avg_pool", "max_pool"),
    "c3_table": ("paper", "full"),
    "output": ("rbf", "linear"),
    "loss": ("map", "mle", "cross_entropy"),
    "optimizer": ("sdlm", "sgd", "adam"),
    "init": ("paper_sqrt", "paper", "pytorch"),
    "bias_init": ("fan_in", "zero"),
    "input_coding": ("paper", "unit"),
    "order": ("fixed", "reshuffle"),
    "distortions": ("none", "affine"),
}

LOSSES_FOR_OUTPUT = {"rbf": ("map", "mle"), "linear": ("cross_entropy",)}


class ConfigError(ValueError):
    """An unknown field value or an invalid combination of fields."""


@dataclass(frozen=True)
class LeNetConfig:
    """Every choice of one run. The defaults are the paper's LeNet-5 trained on MNIST."""

    # --- architecture (Sec. II-B) ---
    squashing: str = "scaled_tanh"  # f(a) = 1.7159 tanh(2/3 a) on C1..F6 (Eq. 6)
    subsampling: str = "trainable_average"  # S2/S4: coef * average(2x2) + bias, then f
    c3_table: str = "paper"  # Table I connection scheme
    output: str = "rbf"  # Euclidean RBF units with fixed 7x12 bitmaps (Eq. 7)
    # --- loss (Sec. II-C) ---
    loss: str = "map"  # Eq. (9)
    map_j: float = 10.0  # the constant j of Eq. (9); the paper gives no value
    # --- training (Sec. III-B, Appendix C) ---
    optimizer: str = "sdlm"
    epochs: int = 20
    eta_schedule: tuple = PAPER_ETA_SCHEDULE  # SDLM global learning rate per pass stage
    sdlm_mu: float = 0.02
    sdlm_samples: int = 500  # patterns used to re-estimate h_kk before each pass
    sdlm_output_curvature: float = 2.0  # d2E/dx_j^2 at the F6 outputs seeding Eq. (27)
    lr: float = 0.0  # "sgd": constant step (0 = eta_schedule / sdlm_mu, SDLM with h = 0); "adam": 0 = 1e-3
    batch_size: int = 1  # 1 = one update per pattern, as the paper
    order: str = "fixed"  # "a constant random order" (Appendix C)
    # --- initialisation (Appendix A) ---
    init: str = "paper_sqrt"
    bias_init: str = "fan_in"  # biases drawn like the unit's weights; the paper is silent
    # --- data (Sec. II-B, III-A, III-C) ---
    input_coding: str = "paper"  # white -0.1, black 1.175, padded to 32x32 with -0.1
    train_size: int = 60000  # the first N training patterns (Fig. 6)
    distortions: str = "none"
    seed: int = 0

    def __post_init__(self):
        # Lists (e.g. from JSON) become tuples so that the config stays hashable.
        schedule = tuple(tuple(stage) for stage in self.eta_schedule)
        object.__setattr__(self, "eta_schedule", schedule)
        validate(self)

    def replace(self, **changes) -> "LeNetConfig":
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ConfigError(f"unknown config field(s) {unknown}; valid: {field_names()}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["eta_schedule"] = [list(stage) for stage in self.eta_schedule]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "LeNetConfig":
        unknown = sorted(set(d) - set(field_names()))
        if unknown:
            raise ConfigError(f"unknown config field(s) {unknown}; valid: {field_names()}")
        return cls(**d)

    def digest(self) -> str:
        """A stable hash of the resolved config: the identity of a run."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def lockstep_key(self) -> str:
        """What the replicas of one lockstep group must share (lenet1998/train.py `fit`): the
        layer shapes (one compiled graph), output layer, budget, schedule and batch size. They
        may differ in seed, initialisation, input coding, distortions, pattern order, squashing
        function, C3 table and (trainable S2/S4) average or sum, and, when trained per pattern
        with an RBF output, in the criterion (MAP or MLE) and the step rule (SDLM or SGD).
        Two configs with the same key can train in one group."""
        d = self.to_dict()
        for name in ("seed", "init", "bias_init", "input_coding", "distortions", "order", "squashing", "c3_table"):
            del d[name]
        if self.subsampling in ("trainable_average", "trainable_sum"):
            d["subsampling"] = "trainable"
        if self.output == "rbf":
            del d["loss"]
        if self.optimizer in ("sdlm", "sgd"):
            d["optimizer"] = "per_pattern"
            del d["lr"]
        return json.dumps(d, sort_keys=True)

    def step_size(self, pass_number: int) -> float:
        """The global step of a pass: SDLM's eta; SGD's step (eta / mu unless lr is set);
        Adam's learning rate."""
        eta = self.eta_schedule[0][1]
        for first_pass, value in self.eta_schedule:
            if pass_number >= first_pass:
                eta = value
        if self.optimizer == "sdlm":
            return eta
        if self.optimizer == "sgd":
            return self.lr or eta / self.sdlm_mu
        return self.lr or 1e-3


def field_names() -> list:
    return [f.name for f in dataclasses.fields(LeNetConfig)]


def validate(c: LeNetConfig) -> None:
    """Raise ConfigError naming the valid options for any unknown value or bad combination."""
    for name, valid in CHOICES.items():
        value = getattr(c, name)
        if value not in valid:
            raise ConfigError(f"{name}={value!r} is not valid; choose one of {list(valid)}")
    if c.loss not in LOSSES_FOR_OUTPUT[c.output]:
        raise ConfigError(
            f"loss={c.loss!r} needs another output layer: output={c.output!r} works with "
            f"loss in {list(LOSSES_FOR_OUTPUT[c.output])}"
        )
    if c.epochs < 1:
        raise ConfigError(f"epochs must be at least 1, got {c.epochs}")
    if c.batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {c.batch_size}")
    if c.optimizer == "sdlm" and c.batch_size != 1:
        raise ConfigError("optimizer='sdlm' updates after every pattern: batch_size must be 1")
    if not 1 <= c.train_size <= 60000:
        raise ConfigError(f"train_size must be in 1..60000, got {c.train_size}")
    if c.map_j <= 0:
        raise ConfigError(f"map_j must be positive (Eq. 9), got {c.map_j}")
    if c.sdlm_mu <= 0 or c.sdlm_samples < 1 or c.sdlm_output_curvature < 0:
        raise ConfigError("sdlm_mu must be > 0, sdlm_samples >= 1, sdlm_output_curvature >= 0")
    if c.lr < 0:
        raise ConfigError(f"lr must be >= 0, got {c.lr}")
    if not c.eta_schedule or c.eta_schedule[0][0] != 1:
        raise ConfigError("eta_schedule must be ((first_pass, eta), ...) starting at pass 1")
