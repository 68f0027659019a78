"""Files of a generated run: the events as JSONL (replayable) and their ground truth as JSON."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import msgspec

from pulseops.generator.model import GeneratedEvent
from pulseops.generator.truth import GroundTruth

_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(GeneratedEvent)


def write_jsonl(events: Iterable[GeneratedEvent], path: str | os.PathLike[str]) -> int:
    """Write one ``{"tenant":..,"payload":{..}}`` line per event so a run can be replayed; returns count.

    ``is_duplicate`` / ``is_late`` are added to a line only when true, which keeps replays labelled.
    """
    n = 0
    it = iter(events)
    with open(path, "wb") as f:
        while chunk := list(itertools.islice(it, 4096)):
            f.write(_ENCODER.encode_lines(chunk))
            n += len(chunk)
    return n


def read_jsonl(path: str | os.PathLike[str]) -> Iterator[GeneratedEvent]:
    """Stream events back from ``write_jsonl`` output (blank lines ignored)."""
    with open(path, "rb") as f:
        for line in f:
            if line.strip():
                yield _DECODER.decode(line)


def write_ground_truth(gt: GroundTruth, path: str | os.PathLike[str]) -> None:
    """Persist ``gt`` next to the events so a later check needs no regeneration."""
    Path(path).write_text(gt.to_json(), encoding="utf-8")
