"""A training run's folder as every ``train run`` keeps it, daemon or not: one process at a time
(``lock``: ``RunLock``, ``RunLocked``, ``LOCK_FILE``), what the run is doing for anyone who asks
(``status``: ``StatusWriter``, ``read_status``, ``format_status``: ``train status``), and the
signals (``signals``: ``RunSignals``: SIGTERM/SIGINT stop a run at its next step, SIGUSR1
checkpoints it); and where one may go (``target``: ``check_run_target``)."""
