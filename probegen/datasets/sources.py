"""Where source examples come from: the Hugging Face hub, GitHub (GoT CSVs) or `data_dir`.

Every source split is exposed as a `SourceSplit` so builders never care which one it was,
and every failure names the file or hub id and what to do about it (docs/design.md §3.3).
"""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

LOCAL_SUFFIXES = (".jsonl", ".parquet", ".csv")
GOT_COMMIT = "5d1c630c44f7e50bda7ad86d601ccadf9abc5ddb"
GOT_URL = (
    "https://raw.githubusercontent.com/saprmarks/geometry-of-truth/{commit}/datasets/{name}.csv"
)


class DataSourceError(RuntimeError):
    """A dataset source could not be read; the message says which and how to fix it."""


@dataclass
class SourceSplit:
    """One split of a source dataset as an Arrow table, with the place it came from."""

    table: pa.Table
    origin: str  # file path or "hub:<id>[/<config>]:<split>", for error messages

    def __len__(self) -> int:
        return self.table.num_rows

    @property
    def column_names(self) -> list[str]:
        return list(self.table.column_names)

    def column(self, name: str) -> list:
        return self.table.column(name).to_pylist()

    def records(self, indices: Sequence[int] | None = None) -> list[dict]:
        table = (
            self.table if indices is None else self.table.take(pa.array(indices, type=pa.int64()))
        )
        return table.to_pylist()


def _check_columns(split: SourceSplit, required: Sequence[str], dataset: str) -> SourceSplit:
    missing = [c for c in required if c not in split.column_names]
    if missing:
        raise DataSourceError(
            f"{split.origin}: dataset {dataset!r} needs column(s) {missing}, found "
            f"{split.column_names}. Use the hub schema of the source dataset (docs/design.md §3.3)."
        )
    return split


def read_table(path: Path) -> pa.Table:
    """Read a .jsonl, .parquet or .csv file into Arrow, with an error naming the file."""
    try:
        if path.suffix == ".jsonl":
            import pyarrow.json as pj

            return pj.read_json(path)
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            return pq.read_table(path)
        if path.suffix == ".csv":
            import pyarrow.csv as pc

            return pc.read_csv(path)
    except (pa.ArrowInvalid, OSError) as err:
        raise DataSourceError(f"{path}: cannot be read as {path.suffix[1:]}: {err}") from err
    raise DataSourceError(f"{path}: unsupported file type; use one of {LOCAL_SUFFIXES}")


class SourceReader:
    """Loads source splits from `data_dir` when given, else from the hub / GitHub."""

    def __init__(self, data_dir: str | Path | None = None, got_cache: str | Path | None = None):
        self.data_dir = Path(data_dir) if data_dir else None
        self.got_cache = Path(got_cache or Path.home() / ".cache" / "probegen" / "got")

    def split(
        self, dataset: str, hub_id: str, config: str | None, split: str, required: Sequence[str]
    ) -> SourceSplit:
        """Split `split` of `dataset` (hub `hub_id`, `config`), checked for `required` columns."""
        if self.data_dir is not None:
            candidates = [self.data_dir / dataset / f"{split}{s}" for s in LOCAL_SUFFIXES]
            found = [p for p in candidates if p.is_file()]
            if not found:
                raise DataSourceError(
                    f"dataset {dataset!r}: no local file for source split {split!r}; expected "
                    f"{candidates[0]} (or .parquet/.csv) holding {hub_id}"
                    f"{'/' + config if config else ''} split {split!r} in hub schema, "
                    f"or drop data_dir= to load from the hub."
                )
            table = read_table(found[0])
            return _check_columns(SourceSplit(table, str(found[0])), required, dataset)
        return _check_columns(self._hub_split(dataset, hub_id, config, split), required, dataset)

    def _hub_split(self, dataset: str, hub_id: str, config: str | None, split: str) -> SourceSplit:
        import datasets

        origin = f"hub:{hub_id}{'/' + config if config else ''}:{split}"
        try:
            ds = datasets.load_dataset(hub_id, config, split=split)
        except Exception as err:  # the hub raises many types; all mean "not available"
            raise DataSourceError(
                f"dataset {dataset!r}: cannot load {origin} ({type(err).__name__}: {err}). "
                f"Check the network / HF_HUB_OFFLINE, or pass data_dir= with local files."
            ) from err
        return SourceSplit(ds.with_format("arrow")[:], origin)

    def got_csv(self, dataset: str, name: str, required: Sequence[str]) -> SourceSplit:
        """A Geometry-of-Truth CSV: `data_dir/got/<name>.csv`, else downloaded once from GitHub."""
        if self.data_dir is not None:
            path = self.data_dir / "got" / f"{name}.csv"
            if not path.is_file():
                raise DataSourceError(
                    f"dataset {dataset!r}: missing {path}; copy {name}.csv from the "
                    f"geometry-of-truth repository's datasets/ folder there, or drop data_dir=."
                )
        else:
            path = self.got_cache / GOT_COMMIT / f"{name}.csv"
            if not path.is_file():
                self._download_got(dataset, name, path)
        return _check_columns(SourceSplit(read_table(path), str(path)), required, dataset)

    def _download_got(self, dataset: str, name: str, path: Path) -> None:
        url = GOT_URL.format(commit=GOT_COMMIT, name=name)
        if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
            raise DataSourceError(
                f"dataset {dataset!r}: {path} is not cached and HF_HUB_OFFLINE=1 forbids "
                f"downloading {url}; pass data_dir= with got/{name}.csv."
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".csv.tmp")
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                tmp.write_bytes(response.read())
        except OSError as err:
            raise DataSourceError(
                f"dataset {dataset!r}: cannot download {url} ({err}); pass data_dir= with "
                f"got/{name}.csv instead."
            ) from err
        os.replace(tmp, path)
