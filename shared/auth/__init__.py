"""Token verification shared by every service (auth alone signs; everyone else verifies)."""
