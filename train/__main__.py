"""``python -m pawpipe.train ...``: the same entry point as the ``train`` console script."""

from pawpipe.train.cli import main

raise SystemExit(main())
