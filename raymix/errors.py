"""The few exceptions raymix raises. All of them pickle across Ray processes.

``RaymixError`` is the base; the CLI turns any of them into a one-line message and a
non-zero exit code.
"""

from __future__ import annotations

import contextlib


class RaymixError(Exception):
    """Base class of every error raymix raises on purpose."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __reduce__(self):
        return (type(self), (self.message,))


class RecipeError(RaymixError):
    """A recipe or GDMix config is invalid. ``field`` is the dotted path of the culprit."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self._raw = message

    def __reduce__(self):
        return (type(self), (self._raw, self.field))


class DataError(RaymixError):
    """Input data is invalid. ``path``, ``row`` and ``column`` locate the problem when known;
    ``reason`` is the message without them."""

    def __init__(
        self,
        message: str,
        path: str | None = None,
        row: int | None = None,
        column: str | None = None,
    ):
        where = []
        if path is not None:
            where.append(str(path))
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column '{column}'")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)
        self.path, self.row, self.column = path, row, column
        self.reason = message

    def with_location(self, path: str | None, row: int | None = None) -> DataError:
        """The same error (reason and column) found at ``path`` and ``row`` instead: a reader
        of a table names the file and the row in the file, not in the table it was given."""
        return DataError(self.reason, path=path, row=row, column=self.column)

    def __reduce__(self):
        return (type(self), (self.reason, self.path, self.row, self.column))


class StorageError(RaymixError):
    """A file or object could not be reached, read or written: no bucket, no such key, no
    or rejected credentials, access denied, an unknown scheme, the server gone. ``uri`` is
    the location as shown (without credentials); ``reason`` the message without it."""

    def __init__(self, message: str, uri: str | None = None):
        super().__init__(f"{uri}: {message}" if uri else message)
        self.uri = uri
        self.reason = message

    def __reduce__(self):
        return (type(self), (self.reason, self.uri))


class FitError(RaymixError):
    """A coordinate could not be fitted. ``entities`` lists the failing entity ids, if any."""

    def __init__(self, message: str, coordinate: str | None = None, entities=()):
        prefix = f"coordinate '{coordinate}': " if coordinate else ""
        super().__init__(prefix + message)
        self.coordinate = coordinate
        self.entities = list(entities)
        self._raw = message

    def __reduce__(self):
        return (type(self), (self._raw, self.coordinate, self.entities))


def unwrap(exc: BaseException) -> BaseException:
    """The raymix error inside Ray's wrappers (RayTaskError, Train's worker failures), if any."""
    pending: list[BaseException | None] = [exc]
    seen: set[int] = set()
    while pending:
        current = pending.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, RaymixError) and getattr(current, "cause", None) is None:
            return current
        pending += [getattr(current, "cause", None), current.__cause__, current.__context__]
        failures = getattr(current, "worker_failures", None)
        if isinstance(failures, dict):
            pending += list(failures.values())
    return exc


@contextlib.contextmanager
def surfaced():
    """Re-raise a RaymixError that Ray wrapped (in a task, actor or Train worker) as itself."""
    try:
        yield
    except Exception as exc:
        cause = unwrap(exc)
        if cause is exc:
            raise
        raise cause from exc
