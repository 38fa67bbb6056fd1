"""Kopf handlers, thin: read the spec, call the builders, apply, write status (`kubetune operator`)."""
