"""What the command-line tools share: logging in, logging, percentiles, local test tokens, the
flags chromium is started with."""
