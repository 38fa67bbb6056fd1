"""Every Kopf handler of the operator (`kopf run -m kubetune.controllers.handlers`)."""

import importlib
import importlib.util

from kubetune.controllers import finetunejob, main  # noqa: F401  (registers the handlers)

# Evaluation and ModelDeployment controllers register themselves when they are present.
for _name in ("evaluation", "modeldeployment"):
    if importlib.util.find_spec(f"kubetune.controllers.{_name}") is not None:
        importlib.import_module(f"kubetune.controllers.{_name}")
