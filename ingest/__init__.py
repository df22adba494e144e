"""pawpipe ingest package."""
