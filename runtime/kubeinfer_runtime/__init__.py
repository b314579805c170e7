"""kubeinfer runtime: the in-pod entrypoint that starts one inference engine."""
