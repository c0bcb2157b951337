"""The auth service's HTTP endpoints: sessions (login, refresh, logout, JWKS), users, gateways;
with the request bodies they read and the models that document them."""
