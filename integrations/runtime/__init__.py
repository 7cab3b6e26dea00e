"""The micro-batch runtime: runs a source or sink connector for one bounded batch."""
