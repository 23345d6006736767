"""Helpers for testing storysdk and its plugins without weights, GPUs or a network (being written)."""
