"""One table of model names: every family registers a name pattern and a builder here.

``create_model("vit-b/16", num_classes=10, image_size=32)`` parses the name, merges the overrides into the
family's config and builds the model. Unknown names fail with the list of known ones.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, fields

from torch import nn


@dataclass(frozen=True)
class Family:
    name: str
    pattern: re.Pattern
    config_cls: type
    build: Callable  # (config) -> nn.Module
    defaults: Callable  # (match) -> dict of config values the name implies
    examples: tuple[str, ...]


_FAMILIES: dict[str, Family] = {}


def register_family(name: str, pattern: str, config_cls: type, build: Callable, defaults: Callable,
                    examples: tuple[str, ...]) -> None:
    _FAMILIES[name] = Family(name, re.compile(pattern + r"\Z", re.IGNORECASE), config_cls, build, defaults, examples)


def list_models() -> list[str]:
    """Every concrete name the registry lists (patterns accept more: any patch size, for example)."""
    return [example for family in _FAMILIES.values() for example in family.examples]


def list_families() -> list[str]:
    return list(_FAMILIES)


def resolve(name: str) -> tuple[Family, dict]:
    """The family a name belongs to and the config values the name implies."""
    for family in _FAMILIES.values():
        match = family.pattern.match(name.strip())
        if match:
            return family, family.defaults(match)
    raise ValueError(f"unknown model {name!r}; known models: {', '.join(list_models())}")


def model_config(name: str, **overrides):
    """The validated config that ``create_model(name, **overrides)`` would build."""
    family, values = resolve(name)
    known = {f.name for f in fields(family.config_cls)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for {name!r} ({family.name}); options: {sorted(known)}")
    return family.config_cls(**{**values, **overrides})


def create_model(name: str, num_classes: int = 1000, image_size=224, **overrides) -> nn.Module:
    """Build a model by name, e.g. ``vit-b/16``, ``vit-ti/4``; overrides are config fields."""
    family, _ = resolve(name)
    model = family.build(model_config(name, num_classes=num_classes, image_size=image_size, **overrides))
    model.model_name = name
    model.family = family.name
    return model


def family_of(name: str) -> str:
    return resolve(name)[0].name


def build_from_config(family_name: str, config: dict) -> nn.Module:
    """Rebuild a model from a family name and its config dict (the JSON saved beside the weights)."""
    if family_name not in _FAMILIES:
        raise ValueError(f"unknown model family {family_name!r}; known: {list_families()}")
    family = _FAMILIES[family_name]
    return family.build(family.config_cls(**config))
