"""``train.fit``: training a model into a run directory, and evaluating its checkpoints.

* ``run``: ``train_from_config`` (what ``train run`` calls) and ``run_training`` (loaders given):
  claim the run directory, decide where to resume, build, resume, record, train; ``context``:
  ``RunContext``, what one run works with, decided once (its device, precision and rank:
  ``device.Placement``, resolved once); ``build``: ``build`` (the model, schedule and ``Trainer``
  from the config) and ``resume`` (a checkpoint loaded into them), two separate steps;
* ``session``: ``Session``, the epoch loop and its decisions (evaluate, stop, checkpoint, early
  stopping); ``checkpoint_saver``: ``CheckpointSaver``, the run's ``last.pt``/``prev.pt``/``best.pt``;
  ``pace``: images per second and the ETAs, measured once per update; ``report``: every
  ``status.json`` update of a run, and the plain progress line;
* ``trainer``: ``Trainer``, the optimizer step (AMP, accumulation, EMA, clipping, non-finite guard);
  ``model``, ``loss``, ``optim``, ``schedule``, ``metrics``, ``device``: its parts;
* ``evaluate``: ``evaluate``, and ``eval_checkpoint``/``predict_checkpoint`` (``train eval/predict``);
* ``checkpoint``: the one checkpoint layout; ``resume``: whether a run directory's checkpoint is the
  same run, and what to clean before going on;
* ``runrecord``, ``curves``, ``dynamics``, ``logs``: what a run writes besides its checkpoints.

It reads its batches through ``train.data`` and uses ``train.rundir``'s lock, signals and status
writer; nothing is re-exported here (``train --help`` does not load torch).
"""
