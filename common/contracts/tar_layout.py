"""The members of a shard tar and its index: written by ``shards build``, checked by ``shards verify``,
read by both training loaders.

A sample is three members named ``<key>.<ext>``, in this order:

* ``<key>.cls``: the label id in ASCII digits (``b"3"``);
* ``<key>.jpg``: the picture, 8-bit RGB baseline JPEG;
* ``<key>.json``: where it came from (``sample_id``, ``label``, ``label_id``, ``group_id``,
  ``image_path``, ``bbox``, ``crop``, ``image_size``, ``size``; written by ``shards.worker``).

A key never contains a dot (WebDataset splits a member name at the first one); samples.parquet
maps keys to sample ids. Next to each ``NAME.tar`` lies ``NAME.idx``, the index in the format of
DALI's ``wds2idx`` (version ``v1.2``): a first line ``v1.2 <samples>``, then one line per sample
listing, for each member, ``<ext> <data offset> <size> <member name>``.
"""

from __future__ import annotations

from pathlib import Path

CLS, JPG, JSON = "cls", "jpg", "json"
MEMBERS = (CLS, JPG, JSON)  # the extensions of a sample's members, in tar order
INDEX_VERSION = "v1.2"
TAR_SUFFIX, INDEX_SUFFIX = ".tar", ".idx"


def member_name(key: str, ext: str) -> str:
    """``<key>.<ext>``: the name of one member of sample ``key``."""
    return f"{key}.{ext}"


def member_key(name: str) -> str:
    """The sample key of a member name, as WebDataset groups them: up to the first dot of the file name."""
    base = name.rsplit("/", 1)[-1]
    return name[: len(name) - len(base)] + base.split(".", 1)[0]


def index_path(tar_path: str | Path) -> Path:
    """The index file beside a tar: ``shard-000007.tar`` -> ``shard-000007.idx``."""
    tar_path = Path(tar_path)
    return tar_path.with_name(tar_path.name[: -len(TAR_SUFFIX)] + INDEX_SUFFIX)


def index_entry(ext: str, offset: int, size: int, name: str) -> str:
    """One member's part of an index line."""
    return f"{ext} {offset} {size} {name}"


def encode_label(label_id: int) -> bytes:
    """The content of a ``.cls`` member."""
    return str(label_id).encode("ascii")
