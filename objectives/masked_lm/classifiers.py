"""Scorers of generated text for the generation bias metric, behind one small interface.

A classifier maps texts to one float each.  Built in (a table, :data:`CLASSIFIERS`):

- ``"vader"`` (default, offline): VADER compound sentiment in [-1, 1] (``vaderSentiment``; the
  lexicon ships in the wheel).
- ``"profanity"``: probability of profanity from ``alt-profanity-check`` (a bundled
  scikit-learn model; ``pip install alt-profanity-check``).
- ``"detoxify"``: Detoxify ``original`` toxicity, the classifier FASP uses; it downloads its
  checkpoint on first use, so it works only where that download is possible.

A further scorer is added with :func:`register_classifier`.  Models are loaded lazily, on the
first :meth:`Classifier.score`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from importlib import metadata
from typing import ClassVar

import numpy as np

__all__ = ["Classifier", "VaderSentiment", "ProfanityCheck", "DetoxifyToxicity", "CLASSIFIERS",
           "register_classifier", "make_classifier", "available_classifiers"]


class Classifier(ABC):
    """``score(texts) -> float[n]``.  ``package`` names the distribution that provides the model
    (its version goes into the problem's fingerprint)."""

    name: ClassVar[str] = ""
    package: ClassVar[str] = ""
    summary: ClassVar[str] = ""

    def __init__(self) -> None:
        self._model = None

    @classmethod
    def is_available(cls) -> bool:
        """Whether the providing package is installed (the model may still need a download)."""
        try:
            metadata.version(cls.package)
        except metadata.PackageNotFoundError:
            return False
        return True

    def describe(self) -> dict:
        try:
            version = metadata.version(self.package)
        except metadata.PackageNotFoundError:
            version = None
        return {"classifier": self.name, "package": self.package, "version": version}

    def score(self, texts: Sequence[str]) -> np.ndarray:
        """``float[len(texts)]``; an empty text scores like any other string."""
        if self._model is None:
            if not self.is_available():
                raise RuntimeError(f"classifier {self.name!r} needs the package {self.package!r}: "
                                   f"pip install {self.package}")
            self._model = self._load()
        return np.asarray(self._score(list(texts)), dtype=float).reshape(len(texts))

    @abstractmethod
    def _load(self) -> object: ...

    @abstractmethod
    def _score(self, texts: list[str]) -> Sequence[float]: ...


class VaderSentiment(Classifier):
    name = "vader"
    package = "vaderSentiment"
    summary = "VADER compound sentiment in [-1, 1] (offline lexicon)"

    def _load(self) -> object:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        return SentimentIntensityAnalyzer()

    def _score(self, texts: list[str]) -> Sequence[float]:
        return [self._model.polarity_scores(t)["compound"] for t in texts]


class ProfanityCheck(Classifier):
    name = "profanity"
    package = "alt-profanity-check"
    summary = "probability of profanity in [0, 1] (alt-profanity-check, bundled model)"

    def _load(self) -> object:
        from profanity_check import predict_prob

        return predict_prob

    def _score(self, texts: list[str]) -> Sequence[float]:
        return self._model(texts)


class DetoxifyToxicity(Classifier):
    name = "detoxify"
    package = "detoxify"
    summary = "Detoxify 'original' toxicity in [0, 1] (downloads its checkpoint on first use)"

    def _load(self) -> object:
        from detoxify import Detoxify

        try:
            return Detoxify("original", device="cpu")
        except Exception as exc:  # the checkpoint download is the usual failure offline
            raise RuntimeError(f"Detoxify could not load its checkpoint ({type(exc).__name__}: {exc}); "
                               "use classifier='vader' or 'profanity' offline") from exc

    def _score(self, texts: list[str]) -> Sequence[float]:
        return self._model.predict(texts)["toxicity"]


CLASSIFIERS: dict[str, type[Classifier]] = {c.name: c for c in (VaderSentiment, ProfanityCheck, DetoxifyToxicity)}


def register_classifier(cls: type[Classifier]) -> type[Classifier]:
    """Add a :class:`Classifier` subclass under ``cls.name``; a taken name raises ``ValueError``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    if cls.name in CLASSIFIERS:
        raise ValueError(f"classifier {cls.name!r} is already registered ({CLASSIFIERS[cls.name].__name__})")
    CLASSIFIERS[cls.name] = cls
    return cls


def make_classifier(name: str) -> Classifier:
    """A new instance of the classifier registered as ``name``."""
    if name not in CLASSIFIERS:
        raise ValueError(f"unknown classifier {name!r}; known: {sorted(CLASSIFIERS)}")
    return CLASSIFIERS[name]()


def available_classifiers() -> list[str]:
    """Names whose package is installed."""
    return [n for n, c in CLASSIFIERS.items() if c.is_available()]
