"""Root conftest: fixture plugins shared across test packages (pytest only honours
``pytest_plugins`` here)."""

pytest_plugins = ["tests.auth_fixtures", "tests.mqtt_fixtures"]
