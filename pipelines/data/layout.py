"""Where split and class come from in an ImageFolder tree: ``<split>/<class>/<file>`` or ``<class>/<file>``.

The same rules apply to a directory on disk and to the tree inside a ``.tgz``/``.tar``/``.zip`` archive, so a
dataset gets the same example ids (hashes of the logical path) whichever way it is packaged.
"""

from __future__ import annotations

import posixpath
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".webp")
ARCHIVE_SUFFIXES = (".tar", ".tgz", ".tar.gz", ".tar.bz2", ".tar.xz", ".zip")
DEFAULT_SPLIT = "train"


def has_suffix(path: str, suffixes: tuple[str, ...]) -> bool:
    return path.lower().endswith(suffixes)


def is_hidden(path: str) -> bool:
    """Hidden files and folders (``.DS_Store``, macOS ``._x.jpg`` resource forks, ``__MACOSX/``) are not data."""
    return any(part.startswith(".") or part == "__MACOSX" for part in path.split("/"))


def archive_stem(name: str) -> str:
    """``train.tgz`` -> ``train``; ``train-000003.tar`` -> ``train`` (shard numbers dropped)."""
    base = posixpath.basename(name)
    for suffix in sorted(ARCHIVE_SUFFIXES, key=len, reverse=True):
        if base.lower().endswith(suffix):
            base = base[: -len(suffix)]
            break
    stripped = re.sub(r"([-_.]?\d+)+(-of-\d+)?$", "", base)
    return stripped or base


@dataclass(frozen=True)
class Placement:
    split: str
    class_name: str
    logical_path: str


@dataclass(frozen=True)
class Layout:
    """How image paths map to (split, class).

    Attributes:
        prefix: wrapper folders stripped from every path (e.g. ``hymenoptera_data/`` inside a zip).
        has_split: paths are ``<split>/<class>/<file>``; otherwise ``<class>/<file>`` of ``default_split``.
        default_split: the split name when the tree has no split level.
        split_in_path: prepend ``default_split`` to logical paths (archives named after their split), so that
            two single-split archives cannot produce the same path.
    """

    prefix: tuple[str, ...]
    has_split: bool
    default_split: str = DEFAULT_SPLIT
    split_in_path: bool = False

    @classmethod
    def infer(cls, image_paths: Iterable[str], default_split: str = DEFAULT_SPLIT,
              split_in_path: bool = False) -> Layout:
        """Infer the layout from image paths (all of them, or just the first when streaming an archive).

        Wrapper folders shared by every path are stripped while paths are deeper than ``split/class/file``; then
        the most common depth decides: 2 means ``class/file``, 3 means ``split/class/file``.
        """
        parts = [p.split("/") for p in image_paths]
        if not parts:
            raise ValueError("no image files (.jpg, .jpeg, .png, .gif, .webp) found")
        prefix: list[str] = []
        while all(len(p) > len(prefix) + 3 for p in parts) and len({p[len(prefix)] for p in parts}) == 1:
            prefix.append(parts[0][len(prefix)])
        depths = Counter(len(p) - len(prefix) for p in parts)
        depth = max(sorted(depths), key=lambda d: depths[d])
        if depth not in (2, 3):
            example = "/".join(next(p for p in parts if len(p) - len(prefix) == depth))
            raise ValueError(
                f"cannot tell split and class from paths like {example!r}: expected <split>/<class>/<file> "
                "or <class>/<file>"
            )
        return cls(tuple(prefix), depth == 3, default_split, split_in_path)

    def place(self, path: str) -> Placement | str:
        """The placement of ``path``, or the reason it does not fit the layout (a string)."""
        parts = path.split("/")
        if tuple(parts[: len(self.prefix)]) != self.prefix:
            return f"outside the dataset folder {'/'.join(self.prefix)!r}"
        parts = parts[len(self.prefix):]
        if self.has_split:
            if len(parts) != 3:
                return "path does not follow <split>/<class>/<file>"
            return Placement(parts[0], parts[1], "/".join(parts))
        if len(parts) != 2:
            return "path does not follow <class>/<file>"
        logical = "/".join([self.default_split, *parts] if self.split_in_path else parts)
        return Placement(self.default_split, parts[0], logical)
