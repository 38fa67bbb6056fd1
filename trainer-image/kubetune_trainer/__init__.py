"""The trainer image: train (this package), evaluate and serve; reads the run config the operator mounts."""
