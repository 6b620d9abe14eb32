"""Signals of the registry."""

from django.dispatch import Signal

# A process found the files of the version it served changed on disk and stopped serving it.
# Arguments: version (ModelVersion), reason (str), served (label now served, or None).
bundle_verification_failed = Signal()
