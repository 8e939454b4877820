"""The HTTP API: route modules, middleware and typed app keys."""
