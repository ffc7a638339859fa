"""What ``raymix fit`` returns: the result of one run, apart from the code that makes it.

:func:`raymix.run.fit` returns it and :func:`raymix.report.summarize` fills it from the
descent's state, so neither of the two imports the other for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class FitResult:
    """What a fit produced: metrics per step, timings and where the files are.

    ``steps`` and ``final`` are the rows and final metrics of ``summary.json``; ``files``
    maps each coordinate to its model and score files.
    """

    output: Path
    steps: list[dict]
    final: dict
    timings: dict
    best_pass: int
    files: dict = field(default_factory=dict)
