"""Sources: read an external system into Arrow batches plus their source offsets."""
