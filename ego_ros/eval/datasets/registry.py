"""Dataset kinds, ``KIND:PATH`` specs and :func:`load_dataset`, which hands a spec to its layout's reader."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .myvlm import read_myvlm
from .rap import read_rap
from .records import Dataset, DatasetError
from .thisismy import read_thisismy, read_thisismy_multi
from .videoqa import read_videoqa
from .yollava import read_yollava

#: Reader of each dataset kind; the order is the one help texts and error messages list the kinds in.
READERS: dict[str, Callable[..., Dataset]] = {
    "yollava": read_yollava,
    "myvlm": read_myvlm,
    "thisismy": read_thisismy,
    "thisismy-multi": read_thisismy_multi,
    "rap": read_rap,
    "videoqa": read_videoqa,
}
KINDS = tuple(READERS)


@dataclass(frozen=True)
class DatasetSpec:
    kind: str
    path: Path

    def __str__(self) -> str:
        return f"{self.kind}:{self.path}"


def parse_dataset_spec(spec: str | DatasetSpec) -> DatasetSpec:
    """Parse ``KIND:PATH`` (``yollava:/data/yollava``); raises DatasetError on an unknown kind."""
    if isinstance(spec, DatasetSpec):
        return spec
    if not isinstance(spec, str) or ":" not in spec:
        raise DatasetError(str(spec), f"a dataset given as KIND:PATH with KIND one of {', '.join(KINDS)}")
    kind, _, path = spec.partition(":")
    kind = kind.strip().lower()
    if kind not in KINDS:
        raise DatasetError(path or spec, f"an unknown dataset kind {kind!r}; expected one of {', '.join(KINDS)}")
    if not path.strip():
        raise DatasetError(spec, "a path after the colon in KIND:PATH")
    return DatasetSpec(kind, Path(path.strip()).expanduser())


def load_dataset(spec: str | DatasetSpec, views: int = 1) -> Dataset:
    """Read the dataset named by ``spec`` choosing the first ``views`` reference images per concept."""
    parsed = parse_dataset_spec(spec)
    if not isinstance(views, int) or isinstance(views, bool) or views < 1:
        raise ValueError(f"views must be a positive integer, got {views!r}")
    return READERS[parsed.kind](parsed.path, views=views)
