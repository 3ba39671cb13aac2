"""Dataset storage on any pyarrow filesystem (local path, s3://, gs://), with commit markers.

Writes are made exactly-once the way Hadoop/Spark committers do it: every file is written
under a private temporary name and moved into place, and a unit of work only counts once
its marker (`_units/<unit>.json`, written last) exists. A killed build leaves at most
temporary files and shards without a marker; both are ignored and overwritten on resume.
"""

from __future__ import annotations

import io
import json
import uuid
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

MANIFEST = "manifest.json"
UNITS_DIR = "_units"
TMP_DIR = "_tmp"
QUARANTINE = "quarantine.jsonl"


@dataclass(frozen=True)
class Store:
    """A dataset root: a filesystem and a base path on it."""

    fs: pafs.FileSystem
    root: str
    uri: str

    @classmethod
    def open(cls, uri: str) -> Store:
        try:
            fs, root = pafs.FileSystem.from_uri(uri)
        except (pa.ArrowInvalid, ValueError):  # a plain relative path
            import os

            fs, root = pafs.LocalFileSystem(), os.path.abspath(uri)
        return cls(fs, root.rstrip("/"), uri)

    def path(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def exists(self, *parts: str) -> bool:
        return self.fs.get_file_info(self.path(*parts)).type != pafs.FileType.NotFound

    def is_empty(self) -> bool:
        info = self.fs.get_file_info(self.root)
        if info.type == pafs.FileType.NotFound:
            return True
        return not self.fs.get_file_info(pafs.FileSelector(self.root, recursive=False))

    def _put(self, rel: str, data: bytes) -> None:
        final = self.path(rel)
        tmp = self.path(TMP_DIR, f"{uuid.uuid4().hex}.tmp")
        self.fs.create_dir(final.rsplit("/", 1)[0], recursive=True)
        self.fs.create_dir(self.path(TMP_DIR), recursive=True)
        with self.fs.open_output_stream(tmp) as out:
            out.write(data)
        self.fs.move(tmp, final)

    def write_parquet(self, rel: str, table: pa.Table) -> int:
        """Write a table atomically; returns its size in bytes."""
        buf = io.BytesIO()
        pq.write_table(table, buf, compression="zstd")
        self._put(rel, buf.getvalue())
        return buf.tell()

    def write_json(self, rel: str, obj: object) -> None:
        self._put(rel, json.dumps(obj, indent=1, sort_keys=True, default=str).encode())

    def write_text(self, rel: str, text: str) -> None:
        self._put(rel, text.encode())

    def read_json(self, rel: str) -> dict:
        with self.fs.open_input_stream(self.path(rel)) as f:
            return json.loads(f.read().decode())

    def list(self, rel: str, suffix: str = "") -> list[str]:
        """Relative names of the files directly under `rel` (sorted)."""
        base = self.path(rel)
        if self.fs.get_file_info(base).type == pafs.FileType.NotFound:
            return []
        infos = self.fs.get_file_info(pafs.FileSelector(base, recursive=False))
        return sorted(
            i.base_name for i in infos if i.type == pafs.FileType.File and i.base_name.endswith(suffix)
        )

    def delete_dir(self, rel: str) -> None:
        if self.exists(rel):
            self.fs.delete_dir(self.path(rel))
