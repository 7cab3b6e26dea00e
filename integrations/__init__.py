"""Headrace's engine: sources, sinks, converters, offsets and the micro-batch runtime.

This package never imports dagster, so it can be used and tested on its own.
"""
