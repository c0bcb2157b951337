"""Auth service: users, sessions (rotating refresh tokens), gateway credentials, signing keys."""
