"""Local servers that speak the providers' protocols, for tests (no internet, no mocks)."""
