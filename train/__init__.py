"""``train``: a ``shards build`` folder -> a trained model in a run directory, its checkpoints
evaluated, and label audits of its training data. Public surface (what tests, benchmarks and the
command line may import; the rest are this stage's insides):

* ``train.cli``: ``main``, the ``train`` command (``python -m pawpipe.train``);
* ``train.config``: ``TrainConfig`` (every training choice; ``DataConfig``, ``OptimConfig`` and the
  other sections), ``load_train_config`` (TOML or a run's ``config.json``, ``--set`` overrides),
  ``ConfigError``;
* ``train.plan``: ``plan`` (``PlanOptions``): memory per batch size and the learning-rate curve
  (``build_planner``, ``recommend``, ``format_plan``, ``lr_plan``);
* ``train.data`` (a room: the data side): ``dataset.read_dataset_info``, ``dataset.shards_root`` and
  ``dataset.split_folder`` (what ``--data`` stands for), ``loader.open_loader`` (the one
  door, taking a ``loader.LoaderSpec``) and ``loader.resolve_data_config`` (its spec from ``[data]``),
  ``transforms.TransformSpec``, ``batch.Batch``/``batch.Loader``, ``synthetic.TensorLoader``;
* ``train.fit`` (the training side): ``run.train_from_config`` and ``run.run_training`` ->
  ``RunResult``; ``evaluate.eval_checkpoint``, ``evaluate.predict_checkpoint``; the checkpoint
  layout (``checkpoint``), the per-sample dynamics (``dynamics.read_dynamics``);
* ``train.rundir`` (a run's folder, daemon or not): ``status.read_status``/``format_status``,
  ``lock.RunLock``, ``signals.RunSignals``, ``target.check_run_target``;
* ``train.daemon`` (runs that outlive a terminal): ``daemon.Daemon``/``daemon.Queue``, and the
  systemd unit ``train/daemon/systemd/pawpipe-train.service``;
* ``train.audit``: the label audit, cross-validation and importance scores (``train audit``,
  ``train crossval``, ``train scores``).

Other stages import nothing from here: the files a run writes are typed in ``common.contracts``
(``status.json``, the dynamics table), and it reads the shards through them too. Nothing is
re-exported at the package level, so ``train --help`` does not load torch.
"""
