"""Runtime configuration and the audit log."""
