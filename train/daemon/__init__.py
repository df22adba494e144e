"""``train.daemon``: runs that outlive a terminal.

* ``daemon``: ``Daemon`` and ``Queue``, queued run configs trained one after another, each in a child
  process (``train daemon``, ``train submit``, ``train cancel``, ``train status --queue``);
* ``status``: ``StatusWriter`` and ``read_status``/``format_status``, a run's ``status.json``
  (``train status``);
* ``lock``: ``RunLock``, one trainer per run directory; ``signals``: ``RunSignals``, SIGTERM/SIGINT
  stop a run at its next step, SIGUSR1 checkpoints it;
* ``systemd/pawpipe-train.service``: a user unit running the daemon.

Nothing here imports ``train.fit`` or ``train.data``: the daemon starts ``python -m train run`` as a
child process.
"""
