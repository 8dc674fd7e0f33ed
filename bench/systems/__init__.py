"""The client side of each system under test (``python -m bench.client``): a, b, c, d."""
