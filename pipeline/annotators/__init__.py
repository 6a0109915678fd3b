"""Annotators: scores and measurements computed once per document, cached, then thresholded by filter's rules.

Adding one: a module here with an Annotator subclass (pipeline/annotators/base.py), and a line in ANNOTATORS.
An annotator outside this package can be named by its import path, "package.module:Class".
"""

from __future__ import annotations

import importlib

from pipeline.annotators.base import Annotator
from pipeline.core.errors import ConfigError

ANNOTATORS: dict[str, str] = {
    "language": "pipeline.annotators.language:LanguageID",
    "tokens": "pipeline.annotators.tokens:TokenCount",
    "quality": "pipeline.annotators.quality:QualitySignals",
    "classifier": "pipeline.annotators.classifier:FastTextClassifier",
}


def annotator_class(name: str) -> type[Annotator]:
    """A registered name, or "module:Class"."""
    target = ANNOTATORS.get(name, name)
    module, sep, attr = target.partition(":")
    if not sep:
        known = ", ".join(ANNOTATORS)
        raise ConfigError(f"unknown annotator {name!r} (known: {known}; or give one as 'package.module:Class')")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"annotator {name!r}: cannot import {target} ({e})") from None
    if not (isinstance(cls, type) and issubclass(cls, Annotator)):
        raise ConfigError(f"annotator {name!r}: {target} is not an Annotator subclass")
    return cls
