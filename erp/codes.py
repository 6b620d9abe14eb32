"""The ERP's known job codes and work centres, as its routings (BI_ROUTING_VIEW) use them.

A planner's edited routing must name jobs and work centres the ERP knows, or the exported
file would be refused on import. Both lists are a few dozen codes, read with one DISTINCT
each and cached for CODES_CACHE_SECONDS: routings gain new work centres rarely.
"""

from __future__ import annotations

from django.core.cache import cache
from django.db.models import Max

from .models import RoutingOperation

CODES_CACHE_SECONDS = 600
_JOBS_KEY = "erp:known_jobs"
_WORK_CENTRES_KEY = "erp:known_work_centres"


def known_jobs() -> dict[str, str]:
    """JOB_CD → JOB_NM (one of the names the routings give it; "" when none), sorted by code."""
    jobs = cache.get(_JOBS_KEY)
    if jobs is None:
        rows = RoutingOperation.objects.order_by("job_cd").values("job_cd").annotate(name=Max("job_nm"))
        jobs = {row["job_cd"]: row["name"] or "" for row in rows if row["job_cd"]}
        cache.set(_JOBS_KEY, jobs, CODES_CACHE_SECONDS)
    return jobs


def known_work_centres() -> dict[str, str]:
    """RES_CD → RES_DIS (one of the names the routings give it; "" when none), sorted by code."""
    centres = cache.get(_WORK_CENTRES_KEY)
    if centres is None:
        rows = RoutingOperation.objects.exclude(res_cd=None).order_by("res_cd").values("res_cd").annotate(name=Max("res_dis"))
        centres = {row["res_cd"]: row["name"] or "" for row in rows if row["res_cd"]}
        cache.set(_WORK_CENTRES_KEY, centres, CODES_CACHE_SECONDS)
    return centres


def forget_known_codes() -> None:
    """Drop the cached lists (after an import or a reseed)."""
    cache.delete_many([_JOBS_KEY, _WORK_CENTRES_KEY])
