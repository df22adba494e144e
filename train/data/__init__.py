"""``train.data``: from a ``shards build`` folder to batches. One module per concern:

* ``dataset``: ``read_dataset_info`` -> ``DatasetInfo``, the trainer's view of ``dataset.json``
  (vocabulary, class weights, counts, pixel statistics);
* ``shardset``: ``ShardSet`` (a split's tars and DALI indexes, checked when opened; a warning when they
  changed since ``shards verify`` passed, from ``common.contracts.verified_file.since_verify``) and
  ``EpochPlan`` (which samples each rank reads in each epoch), the plan both loaders follow;
* ``check_cache``: ``PassedChecks``, the shard checks that passed, remembered across processes
  while the files are unchanged, so an unchanged split is checked once;
* ``transforms``: ``TransformSpec``, the train and eval transforms declared once, realised for DALI
  and for PIL;
* ``loader``: the one door: ``open_loader`` reads as a ``LoaderSpec`` says and returns the DALI loader
  (``loader_dali``) or its PyTorch twin (``loader_torch``);
* ``batch``: ``Batch`` and the ``Loader`` protocol every loader implements; ``synthetic``:
  ``TensorLoader``, a loader over tensors in memory (tests, benchmarks).

This room imports nothing from ``train.fit`` or ``train.daemon``. Nothing is re-exported here, so
importing one module does not load DALI, PIL and webdataset with it.
"""
