"""Kafka Connect's single message transforms, vectorised over Arrow batches."""
