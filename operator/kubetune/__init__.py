"""kubetune: a Kubernetes operator for fine-tuning language models.

The control plane and the shared contract: the API models (`kubetune.api`), the dataset rules
(`kubetune.data`), the pure manifest builders, the Kopf controllers and the local runtime.
"""

__version__ = "0.1.0"
