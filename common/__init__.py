"""Machinery that more than one stage needs. Public surface:

* ``common.executor``: where the batch jobs' units of work run (local processes or a Ray
  cluster): ``Executor``, ``LocalExecutor``, ``RayExecutor``, ``ExecutorOptions``,
  ``open_executor``, ``use_executor``, ``current_executor``, ``worker_count``.
* ``common.lock``: one process per folder, a ``flock`` that dies with its holder:
  ``FolderLock``, ``FolderLocked``.
* ``common.contracts``: one typed contract per file a stage hands to the next (``dataset.json``,
  the shard tables, the tar member layout, ``status.json``, the training dynamics), used by
  writers and readers alike; ``common.schema`` (the ingest tables) and ``common.labels``
  (``labels.json``) are the ingest ones.
"""
