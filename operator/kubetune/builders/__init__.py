"""Pure functions from resource specs to Kubernetes manifests and run configs. No I/O, no client."""
