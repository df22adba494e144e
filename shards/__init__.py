"""``shards``: an ``ingest clean`` output -> WebDataset tar shards with DALI indexes. Public surface
(what other stages may import; the rest are this stage's insides):

* ``build_shards(ShardConfig) -> BuildSummary``: plan, write, verify the accounting, finalize
  (``shards build``; the module ``shards.build`` keeps its name); ``BuildSummary.finalized`` is
  the ``dataset.json`` written, when the run finalized;
* ``ShardConfig``: every build option, from TOML and the command line;
* ``read_build(out)``: the build's journal document (options, fingerprint) of a shards folder.

The files a build hands on (``dataset.json``, the shard tables, the tar member layout, and the record
``shards verify`` leaves, ``verified.json``) are typed
in ``common.contracts``: readers import those, not this stage.
"""

from pawpipe.shards.build import BuildSummary
from pawpipe.shards.build import build as build_shards
from pawpipe.shards.config import ShardConfig
from pawpipe.shards.journal import read_build

__all__ = ["BuildSummary", "ShardConfig", "build_shards", "read_build"]
