"""Password hashing, failed-login throttling and token revocation."""
