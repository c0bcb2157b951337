"""``make screenshots``: the README's pictures of the console, from a real run."""
