"""Concurrent soak of the three HTTP doors: tokens that expire, a key rotation, revocations,
valid and invalid requests mixed; every answer is checked against the one it should get.

Short form in ``make test`` (tests/e2e/test_soak.py), long form: ``python -m tools.soak --help``.
"""
