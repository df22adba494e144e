"""pawpipe shards package."""
