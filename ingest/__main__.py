import sys

from pawpipe.ingest.cli import main

sys.exit(main())
