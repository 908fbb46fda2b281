"""The ``e3backup`` command line."""
