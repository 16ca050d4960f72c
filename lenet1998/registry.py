"""Named choices: each paper piece that a variant can switch is one registry, declared once.

A `Registry` maps the names a config may use (e.g. squashing="scaled_tanh") to their
implementation. The registries live beside the math they name (lenet1998/layers.py,
init.py, loss.py, sdlm.py, data.py, patterns.py, distortions.py); lenet1998/config.py
collects them into `CHOICES`, validates configs against them and words its errors from them.
A name missing from a registry is an error, never a silent fallback.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """An unknown field value or an invalid combination of fields."""


class Registry:
    """An ordered {name: implementation} for one config field."""

    def __init__(self, field: str, entries: dict):
        self.field, self.entries = field, dict(entries)

    def __getitem__(self, name):
        try:
            return self.entries[name]
        except (KeyError, TypeError):
            raise ConfigError(f"{self.field}={name!r} is not valid; choose one of {self.names}") from None

    def __contains__(self, name) -> bool:
        return name in self.entries

    def __iter__(self):
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def names(self) -> list:
        return list(self.entries)
