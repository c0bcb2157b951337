"""Dead letters: archived from their queue into PostgreSQL, listed, replayed and purged."""
