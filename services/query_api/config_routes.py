"""Former home of the configuration routes (now ``config/routes.py``). The audit record is
``shared.audit``; this name stays until the modules written against it use that."""

from shared.audit import record_request as record_audit

__all__ = ["record_audit"]
