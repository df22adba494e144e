"""``python -m train ...``: the same entry point as the ``train`` console script."""

from train.cli import main

raise SystemExit(main())
