"""One filesystem layer: local paths and URIs (``s3://``, ``gs://``, ``hdfs://``, ``file://``).

Every file raymix reads or writes goes through here. A local path (or a ``file://`` URI)
keeps today's behaviour exactly: plain ``open``, ``glob`` and :mod:`raymix.files`' atomic
rename with the usual modes. Any other URI is served by a :mod:`pyarrow.fs` filesystem:

* ``s3://bucket/key`` by :class:`pyarrow.fs.S3FileSystem`, with the AWS SDK's default chain
  for credentials (environment, ``~/.aws``, the instance role): never from a recipe, and a URI
  that carries ``user:secret@`` is refused. An endpoint override (MinIO, Ceph, a test server)
  comes from ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL`` (pyarrow 25 reads neither
  itself), which :func:`use_endpoint` sets from a recipe's ``resources.s3_endpoint``;
* ``gs://bucket/key`` by :class:`pyarrow.fs.GcsFileSystem` (Google's default credentials);
* ``hdfs://host:port/path`` by :class:`pyarrow.fs.HadoopFileSystem` (needs libhdfs).

An object is written whole or not at all (an upload completes or leaves nothing), so
:func:`staged` and :func:`write_bytes` give object stores the same guarantee the rename gives
local files; a *directory* of outputs is published with a ``_SUCCESS`` marker written last
(:data:`SUCCESS`, as Hadoop and Spark do, see :mod:`raymix.outputs`).

Failures become one :class:`~raymix.errors.StorageError` line naming the URI (no bucket, no
such key, no or rejected credentials, access denied, the server unreachable), with no
traceback and nothing secret in it.
"""

from raymix.storage.access import (
    check_reachable,
    copy_tree,
    delete_file,
    delete_tree,
    existing_file,
    exists,
    glob,
    is_dir,
    is_file,
    list_dir,
    local_copy,
    make_dirs,
    open_input,
    read_bytes,
    read_text,
    size,
    staged,
    text_stream,
    upload,
    walk,
    write_bytes,
    write_json,
    write_text,
)
from raymix.storage.filesystems import (
    errors,
    filesystem,
    reason_of,
    s3_endpoint,
    scrub,
    use_endpoint,
)
from raymix.storage.trees import local_tree, upload_tree, writing_tree
from raymix.storage.uris import (
    REMOTE_SCHEMES,
    SUCCESS,
    Location,
    absolute,
    as_path,
    is_uri,
    join,
    name_of,
    normal,
    parent,
    scheme,
    shown,
)

__all__ = [
    "Location",
    "REMOTE_SCHEMES",
    "SUCCESS",
    "absolute",
    "as_path",
    "check_reachable",
    "copy_tree",
    "delete_file",
    "delete_tree",
    "errors",
    "existing_file",
    "exists",
    "filesystem",
    "glob",
    "is_dir",
    "is_file",
    "is_uri",
    "join",
    "list_dir",
    "local_copy",
    "local_tree",
    "make_dirs",
    "name_of",
    "normal",
    "open_input",
    "parent",
    "read_bytes",
    "read_text",
    "reason_of",
    "s3_endpoint",
    "scheme",
    "scrub",
    "shown",
    "size",
    "staged",
    "text_stream",
    "upload",
    "upload_tree",
    "use_endpoint",
    "walk",
    "write_bytes",
    "write_json",
    "write_text",
    "writing_tree",
]
