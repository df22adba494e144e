"""pawpipe validation_rules package."""
