"""The one parser of direction SPECs (``generate --direction``, a sweep's ``spec``, the quickstart).

    random:SEED                  a seeded random unit vector of the hook's width
    PATH.safetensors[:SELECT]    a file: a plain vector file (SELECT = a tensor name) or a
                                 direction set (SELECT = all, an index, or empty: the directions
                                 at the requested hook); see harness/directions/store.py
    feature:WHERE:ID             decoder row ID of the dictionary at WHERE: a folder, or a hub
                                 REF (``hf://OWNER/REPO[@REV]/PATH``, ``saelens://RELEASE/ID``;
                                 see dictionaries/hub.py). WHERE is everything between
                                 ``feature:`` and the last ``:``

Parsing is syntax only: nothing is read here (whether a file is a direction set:
``harness.directions.store.is_direction_set``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from harness.config import ConfigError

SPEC_FORMS = "random:SEED, FILE.safetensors[:NAME] or feature:DIR:ID"


class _Spec:
    """``str(spec)`` is the text it was parsed from (as the user wrote it), else its canonical
    form."""

    text: str

    def canonical(self) -> str:
        raise NotImplementedError

    def __str__(self) -> str:
        return self.text or self.canonical()


@dataclass(frozen=True)
class RandomSpec(_Spec):
    seed: int
    text: str = field(default="", compare=False, repr=False)

    def canonical(self) -> str:
        return f"random:{self.seed}"


@dataclass(frozen=True)
class FileSpec(_Spec):
    """``PATH.safetensors`` with an optional selector (a tensor name, ``all`` or an index)."""

    path: Path
    select: str = ""
    text: str = field(default="", compare=False, repr=False)

    def canonical(self) -> str:
        return f"{self.path}:{self.select}" if self.select else str(self.path)


@dataclass(frozen=True)
class FeatureSpec(_Spec):
    """Feature ``feature`` of the dictionary at ``location``."""

    location: str
    feature: int
    text: str = field(default="", compare=False, repr=False)

    def canonical(self) -> str:
        return f"feature:{self.location}:{self.feature}"

    @property
    def folder(self) -> Path:
        """The location as a local path (meaningless for hub REFs: use ``location``)."""
        return Path(self.location)


Spec = RandomSpec | FileSpec | FeatureSpec


def parse_spec(text: str, what: str = "--direction") -> Spec:
    """Parse a SPEC; a bad one raises ConfigError naming ``what`` and the accepted forms."""
    kind, _, rest = text.partition(":")
    if kind == "random":
        if not rest.lstrip("-").isdigit():
            raise ConfigError(f"{what} {text}: expected random:SEED with an integer seed")
        return RandomSpec(int(rest), text)
    if kind == "feature":
        location, _, fid = rest.rpartition(":")
        if not location or not fid.isdigit():
            raise ConfigError(f"{what} {text}: expected feature:DIR:ID")
        return FeatureSpec(location, int(fid), text)
    if ".safetensors" in text:
        path, _, select = text.partition(".safetensors")
        return FileSpec(Path(path + ".safetensors"), select.removeprefix(":"), text)
    raise ConfigError(f"{what} {text}: unknown SPEC (use {SPEC_FORMS})")
