"""Command-line interface (``e3backup ...``)."""
