"""Machinery that more than one stage needs. Public surface:

* ``common.atomic``: writes that are all or nothing: ``write_bytes``, ``write_text``,
  ``write_json``, ``write_parquet``, ``atomic_path``, a set of outputs published together
  (``staged_folder``, ``publish``, ``read_outputs``, ``check_outputs``), ``sweep_temps``.
* ``common.config``: configuration from TOML (or JSON) with overrides, validated by pydantic:
  ``read_config_file``, ``apply_overrides``, ``validate``, ``load_config``, ``ConfigError``,
  ``COMMAND_LINE`` (an error line's source for a flag's value).
* ``common.cli``: what every command line does alike (exit codes, one-line errors, Ctrl-C,
  ``--version``): ``run``, ``finish_parser``, ``describe_os_error``, ``version``.
* ``common.progress``: rate and ETA on long work: ``progress``.
* ``common.folders``: what a folder is (which tool wrote it) before writing into it:
  ``what_is``, ``describe``, ``check_target``.
* ``common.images``: ``open_oriented`` (EXIF orientation applied), ``to_rgb8``, ``resolve_under``.
* ``common.fonts``: fonts for Korean class names in pages and charts: ``CSS_FONT_FAMILY``,
  ``chart_rc``, ``chart_names``.
* ``common.textwidth``: terminal column width (wide Hangul counts two): ``columns``, ``ljust``.

* ``common.executor``: where the batch jobs' units of work run (local processes or a Ray
  cluster): ``Executor``, ``LocalExecutor``, ``RayExecutor``, ``ExecutorOptions``,
  ``open_executor``, ``use_executor``, ``current_executor``, ``worker_count``.
* ``common.lock``: one process per folder, a ``flock`` that dies with its holder:
  ``FolderLock``, ``FolderLocked``.
* ``common.contracts``: one typed contract per file a stage hands to the next (``dataset.json``,
  the shard tables, the tar member layout, ``status.json``, the training dynamics, and ingest's:
  the manifest and quarantine tables, ``labels.json``), used by writers and readers alike.
"""
