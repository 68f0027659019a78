"""Where the cold files live: a local folder or an S3-compatible bucket (`PULSEOPS_COLD__URL`), one file per
dataset, day and project."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from pulseops.settings import ColdSettings

if TYPE_CHECKING:
    import pyarrow.fs as pafs


@dataclass(frozen=True)
class ColdStore:
    """The cold root: a pyarrow filesystem (local or S3-compatible) and the base path inside it."""

    fs: pafs.FileSystem
    root: str

    @classmethod
    def from_settings(cls, cold: ColdSettings) -> ColdStore:
        import pyarrow.fs as pafs

        if cold.url.startswith("s3://"):
            # Credentials come from the AWS_* environment variables / profile, as for any S3 client.
            fs = pafs.S3FileSystem(endpoint_override=cold.s3_endpoint, region=cold.s3_region or "us-east-1")
            return cls(fs, cold.url.removeprefix("s3://").rstrip("/"))
        root = Path(cold.url.removeprefix("file://")).absolute()
        return cls(pafs.LocalFileSystem(), str(root))

    @property
    def local(self) -> bool:
        import pyarrow.fs as pafs

        return isinstance(self.fs, pafs.LocalFileSystem)

    def full(self, relative: str) -> str:
        return f"{self.root}/{relative}"

    def size(self, relative: str) -> int | None:
        import pyarrow.fs as pafs

        info = self.fs.get_file_info(self.full(relative))
        return info.size if info.type == pafs.FileType.File else None


def relative_path(dataset: str, day: date, project_id: uuid.UUID) -> str:
    return f"{dataset}/day={day.isoformat()}/project={project_id}/{dataset}.parquet"
