"""Admin CLI for the dead-letter archive (``python -m tools.deadletters``)."""
