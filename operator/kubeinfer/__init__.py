"""kubeinfer: a Kubernetes operator that deploys LLM inference engines."""
