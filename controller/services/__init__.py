"""Use-cases the CLI and the dashboard call. Each returns per-device outcomes."""
