"""The embedded runtime behind `kubetune run`: the same manifests, run configs and trainer as a cluster, on this machine."""
