"""Run a quality cycle now (in this process with --sync, else on the cluster)."""

from json import dumps

from django.core.management.base import BaseCommand, CommandError

from quality.models import CycleInProgress, QualityCycle, QualitySettings


def _figure(value, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def cycle_summary(summary: dict) -> str:
    """A few lines a person reads after a cycle (the full record: --json)."""
    duration = summary.get("duration_seconds")
    lines = [
        f"Quality cycle {summary['cycle']} {summary['status']} on model {summary.get('model_version') or '—'}: "
        f"{summary.get('items_evaluated', 0)} of {summary.get('items_sampled', 0)} items evaluated "
        f"({summary.get('items_without_actuals', 0)} without actual times, {summary.get('items_failed', 0)} failed)"
        + (f" in {duration:.1f} s." if duration is not None else "."),
        f"  MAE {_figure(summary.get('mae'), 2)} · trim MAE {_figure(summary.get('trim_mae'), 2)} min/unit"
        f" · process match {_figure(summary.get('process_match'))} · exact match {_figure(summary.get('exact_match'))}",
    ]
    if summary.get("planner_items"):
        lines.append(
            f"  planner agreement {_figure(summary.get('planner_process_match'))} (exact {_figure(summary.get('planner_exact_match'))}) "
            f"over {summary['planner_items']} decided items"
        )
    lines.append(f"  alerts: {', '.join(summary.get('alerts') or []) or 'none'}")
    if summary.get("retraining_decision"):
        lines.append(f"  retraining: {summary['retraining_decision']}")
    if summary.get("error"):
        lines.append(f"  error: {summary['error']}")
    lines.append("  (--json prints the full record)")
    return "\n".join(lines)


class Command(BaseCommand):
    help = "Evaluate the active model on recent items against actual work orders; prints a short summary (--json: the full record)."

    def add_arguments(self, parser):
        parser.add_argument("--sample-size", type=int)
        parser.add_argument("--strategy", choices=QualitySettings.Strategy.values)
        parser.add_argument("--sync", action="store_true", help="Run here and wait (default: hand it to the task cluster).")
        parser.add_argument("--if-none", action="store_true", help="Do nothing if a quality cycle was ever run (make run's first cycle).")
        parser.add_argument("--json", action="store_true", help="With --sync: print the full record as JSON on the last line.")

    def handle(self, *args, sample_size, strategy, sync, if_none, json: bool = False, **options):
        if if_none and QualityCycle.objects.exists():
            self.stdout.write("A quality cycle has already run: nothing to do.")
            return
        if sample_size is not None and not 10 <= sample_size <= 10000:
            raise CommandError("--sample-size must be between 10 and 10,000.")
        try:
            if not sync:
                cycle, task_id = QualityCycle.enqueue(trigger=QualityCycle.Trigger.MANUAL, sample_size=sample_size, strategy=strategy)
                self.stdout.write(f"Quality cycle {cycle.pk} queued as task {task_id}.")
                return
            from quality.cycle import run_cycle
            from quality.notifications import deliver_inline

            # Its alerts' mails and webhooks are sent before the command returns (a failed one is logged, not raised).
            with deliver_inline():
                cycle = run_cycle(trigger=QualityCycle.Trigger.MANUAL, sample_size=sample_size, strategy=strategy)
        except CycleInProgress as exc:
            raise CommandError(exc.message)
        summary = cycle.summary()
        self.stdout.write(dumps(summary, default=str) if json else cycle_summary(summary))
        if cycle.status != QualityCycle.Status.SUCCEEDED:
            raise CommandError(f"Quality cycle {cycle.pk} failed: {cycle.error}")
