"""``train.daemon``: runs that outlive a terminal.

* ``daemon``: ``Daemon`` and ``Queue``, queued run configs trained one after another, each in a child
  process (``train daemon``, ``train submit``, ``train cancel``, ``train status --queue``);
* ``systemd/pawpipe-train.service``: a user unit running the daemon.

Nothing here imports ``train.fit`` or ``train.data``: the daemon starts ``python -m pawpipe.train run`` as a
child process. The run folder's lock, status and signals, which every run uses, are ``train.rundir``.
"""
