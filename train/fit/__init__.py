"""``train.fit``: training a model into a run directory, and evaluating its checkpoints.

* ``run``: ``train_from_config`` (what ``train run`` calls) and ``run_training`` (loaders given):
  lock, resume, train, record; the epoch loop around each update;
* ``loop``: ``Trainer``, the optimizer step (AMP, accumulation, EMA, clipping, non-finite guard);
  ``model``, ``loss``, ``optim``, ``schedule``, ``metrics``, ``device``: its parts;
* ``evaluate``: ``evaluate``, and ``eval_checkpoint``/``predict_checkpoint`` (``train eval/predict``);
* ``checkpoint``: the one checkpoint layout; ``resume``: whether a run directory's checkpoint is the
  same run, and what to clean before going on;
* ``runrecord``, ``curves``, ``dynamics``, ``logs``: what a run writes besides its checkpoints.

It reads its batches through ``train.data`` and uses ``train.daemon``'s lock, signals and status
writer; nothing is re-exported here (``train --help`` does not load torch).
"""
