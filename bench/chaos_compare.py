"""Chaos: what a run leaves, as digests to compare with the undisturbed run's.

Avro files (models, score files) record by record with every float by its exact ``repr``;
``summary.json`` and every ``evalSummary.json`` by their numbers, without those that differ
between identical runs by nature (timings, process ids, restart counts, evaluations
replayed after a restart). The checkpoint, ``run.json``, the report page and ``_SUCCESS``
are not compared.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import fastavro

#: JSON keys whose numbers differ between identical runs by nature
VOLATILE = ("seconds", "per_second", "timings", "pid", "restarts", "rebuilds", "replayed")


def numbers(value, path: str = "") -> dict[str, str]:
    """Every number in a JSON value (its ``repr``) by its path, without the volatile ones."""
    found: dict[str, str] = {}
    if isinstance(value, dict):
        for k, v in value.items():
            if not any(word in k for word in VOLATILE):
                found.update(numbers(v, f"{path}.{k}"))
    elif isinstance(value, list):
        for k, v in enumerate(value):
            found.update(numbers(v, f"{path}[{k}]"))
    elif isinstance(value, int | float) and not isinstance(value, bool):
        found[path] = repr(value)
    return found


def exact(value):
    """``value`` with every float replaced by its ``repr`` (JSON would round-trip it anyway,
    but this says what is compared)."""
    if isinstance(value, dict):
        return {k: exact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [exact(v) for v in value]
    return repr(value) if isinstance(value, float) else value


def digests(out: Path) -> dict[str, str]:
    """Relative path -> digest of every model, score file and metric file of a run."""
    found = {}
    for path in sorted(out.rglob("*")):
        if not path.is_file() or "checkpoint" in path.relative_to(out).parts:
            continue
        digest = hashlib.sha256()
        if path.suffix == ".avro":
            with path.open("rb") as handle:
                for record in fastavro.reader(handle):
                    digest.update(json.dumps(exact(record), sort_keys=True).encode())
        elif path.name in ("summary.json", "evalSummary.json"):
            content = numbers(json.loads(path.read_text()))
            digest.update(json.dumps(content, sort_keys=True).encode())
        else:
            continue  # run.json, report.html, _SUCCESS
        found[str(path.relative_to(out))] = digest.hexdigest()
    return found


def differences(reference: dict[str, str], mine: dict[str, str]) -> list[str]:
    """The files that differ, or that only one of the two runs has."""
    return sorted(k for k in reference.keys() | mine.keys() if reference.get(k) != mine.get(k))
