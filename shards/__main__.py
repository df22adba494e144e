import sys

from pawpipe.shards.cli import main

sys.exit(main())
