"""The kubeinfer API: typed models of the custom resources (pure data, no I/O)."""
