"""Every Kopf handler of the operator (`kopf run -m kubetune.controllers.handlers`)."""

from kubetune.controllers import evaluation, finetunejob, main, modeldeployment, retention  # noqa: F401  (registers the handlers)
