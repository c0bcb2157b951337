"""Root conftest: fixture plugins shared across test packages (pytest only honours
``pytest_plugins`` here), and the scan of the service logs after a run (tests/logscan.py)."""

pytest_plugins = [
    "tests.dependencies",
    "tests.clock",
    "tests.auth_fixtures",
    "tests.mqtt_fixtures",
    "tests.logscan",
]
