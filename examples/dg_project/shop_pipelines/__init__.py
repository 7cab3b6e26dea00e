"""Example dg project: Headrace connectors through ``headrace.ConnectorsComponent``."""
