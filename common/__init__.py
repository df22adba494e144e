"""Machinery that more than one stage needs. Public surface:

* ``common.executor``: where the batch jobs' units of work run (local processes or a Ray
  cluster): ``Executor``, ``LocalExecutor``, ``RayExecutor``, ``ExecutorOptions``,
  ``open_executor``, ``use_executor``, ``current_executor``, ``worker_count``.
* ``common.lock``: one process per folder, a ``flock`` that dies with its holder:
  ``FolderLock``, ``FolderLocked``.
"""
