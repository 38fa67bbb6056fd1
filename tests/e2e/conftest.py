"""Fixtures and the KUBECONFIG switch of the e2e tests; helpers are in e2e_support.py."""

from e2e_support import kube, pytest_collection_modifyitems  # noqa: F401
