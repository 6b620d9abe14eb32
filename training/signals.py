"""Signals other apps listen to, so training never imports the apps downstream of it."""

from django.dispatch import Signal

# Sent by the pipeline after a job registered its version: kwargs `job`, `version`.
version_trained = Signal()

# Sent by TrainingJob.fail() when a job moved to `failed`: kwargs `job`.
job_failed = Signal()
