"""Settings of the test run: the application's own, in development mode (DEBUG=true unless the environment says otherwise).

Production is the default of routing_ml.settings; the test client and the live server speak plain
HTTP, which production mode would redirect to HTTPS. Subprocesses started by tests inherit DEBUG
from here; tests of production mode (test_settings) set it themselves.
"""

import os
import platform
from pathlib import Path

os.environ.setdefault("DEBUG", "true")


def _pin_float_kernels() -> None:
    """One set of floating-point kernels on every x86-64 test machine, so the golden files hold on all of them.

    OpenBLAS and NumPy choose their SIMD kernels by CPU at load time (OpenBLAS: SkylakeX on AVX-512
    Intel, Haswell on AMD Zen; NumPy: AVX-512 loops where there are any), and the kernels round the
    last bits of sums and products differently. That is enough to swap two neighbours whose
    similarities differ by 1e-16, or to round a time's fourth decimal the other way, so a golden
    answer recorded on one CPU failed on another. Every machine that runs this suite has AVX2 and
    FMA, so the run pins those kernels (before NumPy is first imported, and inherited by the
    gunicorn and qcluster subprocesses the tests start). The environment can still override both.
    """
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return
    if platform.machine() in ("x86_64", "AMD64") and "avx2" in flags and "fma" in flags:
        os.environ.setdefault("OPENBLAS_CORETYPE", "Haswell")
        os.environ.setdefault("NPY_DISABLE_CPU_FEATURES", "X86_V4 AVX512_ICL AVX512_SPR")


_pin_float_kernels()

from routing_ml.settings import *  # noqa: E402, F403

# Throttle counts per test process (the autouse fixture in conftest.py clears them between tests).
CACHES = {**CACHES, "throttle": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "throttle"}}  # noqa: F405
