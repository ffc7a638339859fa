"""pyarrow filesystems for URIs, and their errors as one secret-free line."""

from __future__ import annotations

import contextlib
import functools
import os
import re
from urllib.parse import urlsplit

from raymix.errors import StorageError
from raymix.storage.uris import REMOTE_SCHEMES, normal, scheme, shown


def use_endpoint(endpoint: str | None) -> None:
    """Make ``endpoint`` (``http://host:port``) the S3 endpoint of this process and of the
    processes it starts (an embedded Ray's workers inherit the environment)."""
    if endpoint:
        os.environ["AWS_ENDPOINT_URL_S3"] = endpoint
        forget()


def forget() -> None:
    """Drop the filesystems made so far (after the environment changed)."""
    _s3.cache_clear()
    _gcs.cache_clear()


def s3_endpoint() -> str | None:
    """The S3 endpoint override of this process's environment, if any."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def filesystem(path: str | os.PathLike):
    """``(pyarrow filesystem, path in it)`` for any path or URI."""
    import pyarrow.fs as pafs

    text = normal(path)
    kind = scheme(text)
    if not kind:
        return pafs.LocalFileSystem(), os.path.abspath(text)
    if kind not in REMOTE_SCHEMES:
        raise StorageError(
            f"unknown scheme '{kind}://' (raymix reads s3://, gs://, hdfs://, file:// and local "
            "paths)",
            shown(text),
        )
    parts = urlsplit(text)
    if "@" in parts.netloc:
        raise StorageError(
            "credentials in a URI are refused: they come from the environment or the instance "
            "role (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, GOOGLE_APPLICATION_CREDENTIALS)",
            shown(text),
        )
    if not parts.netloc:
        raise StorageError("the URI names no bucket or host", shown(text))
    if kind == "s3":
        return _s3(s3_endpoint(), _region()), parts.netloc + parts.path.rstrip("/")
    if kind in ("gs", "gcs"):
        return _gcs(), parts.netloc + parts.path.rstrip("/")
    with errors(text, "cannot connect to HDFS"):
        fs, inner = pafs.FileSystem.from_uri(text)
    return fs, inner


def _region() -> str | None:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None


@functools.lru_cache(maxsize=8)
def _s3(endpoint: str | None, region: str | None):
    import pyarrow.fs as pafs

    options: dict = {"region": region or "us-east-1"}
    if endpoint:
        url = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        options.update(endpoint_override=url.netloc + url.path.rstrip("/"), scheme=url.scheme)
    return pafs.S3FileSystem(**options)


@functools.lru_cache(maxsize=1)
def _gcs():
    import pyarrow.fs as pafs

    return pafs.GcsFileSystem()


_AWS_REASONS = {
    "NO_SUCH_BUCKET": "no such bucket",
    "NoSuchBucket": "no such bucket",
    "ACCESS_DENIED": "access denied (check the credentials and what they may do)",
    "AccessDenied": "access denied (check the credentials and what they may do)",
    "INVALID_ACCESS_KEY_ID": "the credentials were rejected (unknown access key)",
    "InvalidAccessKeyId": "the credentials were rejected (unknown access key)",
    "SIGNATURE_DOES_NOT_MATCH": "the credentials were rejected (bad signature)",
    "SignatureDoesNotMatch": "the credentials were rejected (bad signature)",
    "MISSING_AUTHENTICATION_TOKEN": "no credentials (set AWS_ACCESS_KEY_ID and "
    "AWS_SECRET_ACCESS_KEY, or run with an instance role)",
    "NETWORK_CONNECTION": "cannot reach the object store",
}


def reason_of(exc: BaseException) -> str:
    """A short, secret-free reason for a filesystem error."""
    if isinstance(exc, FileNotFoundError):
        return "no such file or directory"
    if isinstance(exc, IsADirectoryError):
        return "is a directory"
    if isinstance(exc, PermissionError):
        return "permission denied"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    for code, reason in _AWS_REASONS.items():
        if code in text:
            return reason
    if "credentials" in text.lower() and ("no " in text.lower() or "unable" in text.lower()):
        return _AWS_REASONS["MISSING_AUTHENTICATION_TOKEN"]
    text = re.sub(r"\s*\(Request ID: [^)]*\)", "", text)
    text = re.sub(r"^When [^:]*: ", "", text)
    return scrub(text)


def scrub(text: str) -> str:
    """``text`` with the values of the credential variables of the environment masked."""
    for name in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID"):
        value = os.environ.get(name)
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return text


@contextlib.contextmanager
def errors(path: str | os.PathLike, what: str):
    """Turn a filesystem error inside the block into one :class:`StorageError` line:
    ``<uri>: <what>: <reason>``."""
    try:
        yield
    except StorageError:
        raise
    except (OSError, ValueError) as exc:
        reason = reason_of(exc)
        if isinstance(exc, FileNotFoundError) and scheme(path) and not _bucket_exists(path):
            reason = "no such bucket"
        elif scheme(path) == "s3" and not isinstance(exc, FileNotFoundError) and _no_credentials():
            reason += " (no credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
            reason += "a profile in ~/.aws, or run with an instance role)"
        raise StorageError(f"{what}: {reason}", shown(path)) from None


def _no_credentials() -> bool:
    """Whether the AWS chain has nothing to offer but, perhaps, an instance role."""
    names = (
        "AWS_ACCESS_KEY_ID",
        "AWS_PROFILE",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    )
    if any(os.environ.get(name) for name in names):
        return False
    files = [os.environ.get("AWS_SHARED_CREDENTIALS_FILE"), os.environ.get("AWS_CONFIG_FILE")]
    files += [os.path.expanduser("~/.aws/credentials"), os.path.expanduser("~/.aws/config")]
    return not any(f and os.path.isfile(f) and os.path.getsize(f) for f in files)


def _bucket_exists(path: str | os.PathLike) -> bool:
    """Whether the bucket (or host) of a URI answers; True when that cannot be told."""
    import pyarrow.fs as pafs

    try:
        fs, inner = filesystem(path)
        return fs.get_file_info(inner.split("/", 1)[0]).type != pafs.FileType.NotFound
    except (OSError, ValueError, StorageError):
        return True
