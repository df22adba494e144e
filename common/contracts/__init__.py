"""The files one stage hands to the next, one module each; writers and readers both import them.

* ``common.contracts.dataset_file``: ``SHARDS/dataset.json``: ``DatasetFile`` (``write``/``read``),
  its sections, ``DATASET_FILE``, ``find_dataset_file``;
* ``common.contracts.shard_tables``: the Arrow schemas of ``shards.parquet``, ``samples.parquet`` and
  ``failed.parquet`` (``SHARDS``, ``SAMPLES``, ``FAILED``), their file names, ``NOT_SELECTED``;
* ``common.contracts.tar_layout``: a shard tar's members (``MEMBERS``, ``member_name``, ``member_key``,
  ``encode_label``) and its DALI index (``INDEX_VERSION``, ``index_path``, ``index_entry``);
* ``common.contracts.status_file``: a training run's ``status.json``: ``RunStatus``, ``STATES``,
  ``write_status_file``/``read_status_file``, ``epochs_done``;
* ``common.contracts.dynamics_table``: the per-sample training dynamics: ``dynamics_schema``;
* ``common.contracts.json_file``: reading a JSON hand-off through its model, with one-line errors;
* ``common.contracts.verified_file``: ``SHARDS/verified.json``, what the last passing ``shards verify``
  checked (``record_pass``, ``forget_pass``) and what changed since (``since_verify``, the loaders' warning).;
* ``common.contracts.ingest_tables``: the Arrow schemas of every table ingest produces (``RECORDS``,
  ``PROBES``, ``MANIFEST``, ``QUARANTINE``);
* ``common.contracts.labels_file``: ``CLEAN/labels.json``, the label vocabulary and class weights.
"""
