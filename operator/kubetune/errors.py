"""The operator's own exceptions, named by who can act on them.

Each is a ValueError, as all three were before they had names, so a caller that catches ValueError still does;
callers catch the one they handle.
"""


class SpecError(ValueError):
    """The spec asks for something that cannot be built as written (the user changes the spec)."""


class OwnershipConflict(ValueError):
    """An object the operator would write exists and belongs to something else (the user deletes or renames it)."""


class UnresolvedReference(ValueError):
    """A reference (fromJob, a checkpoint name, a ModelDeployment's endpoint) that cannot be resolved yet or at all."""
