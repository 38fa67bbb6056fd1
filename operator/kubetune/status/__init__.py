"""The status of each kind, computed from what was observed. Pure: no Kubernetes client, no Kopf, no torch.

One module per kind, each with the same small interface: an observation in (the batch Job and its pods,
an apps/v1 Deployment, or what `kubetune run` saw of its child process), an outcome (phase, reason,
message), and the status fields the operator owns out, as a merge patch. The controllers write that
patch to the status subresource; the local runtime merges it into the status it saves. Both therefore
write the same phases, `observedGeneration` and kstatus conditions (`conditions`, shared by the kinds).

    conditions        kstatus conditions: Ready, Reconciling, Stalled, Succeeded/Failed, transition times
    finetunejob       FineTuneJob: phase from the training Job and pods (or the local trainer process)
    evaluation        Evaluation: phase from the evaluation Job (or the local evaluator), pass/fail
    modeldeployment   ModelDeployment: phase from the promotion decision and the serving workload

What the trainer itself reports (progress, metrics, checkpoints) becomes status through
`kubetune.api.progress`, which the trainer image imports.
"""
