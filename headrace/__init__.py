"""Headrace: the console script and the demo."""
