"""pawpipe train package."""
