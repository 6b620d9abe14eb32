"""The golden answers hold on any x86-64 machine only if the test run's float kernels are pinned (tests/settings.py)."""

from __future__ import annotations

import os

import pytest
from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
from threadpoolctl import threadpool_info


@pytest.mark.skipif("OPENBLAS_CORETYPE" not in os.environ, reason="no AVX2 here: the kernels are not pinned")
def test_the_pinned_kernels_are_the_ones_loaded():
    # Fails when something imports NumPy before the settings set the variables (a pytest warning
    # filter naming a scikit-learn class did): the variables then have no effect on this process.
    blas = [info["architecture"] for info in threadpool_info() if info["user_api"] == "blas"]
    assert blas and set(blas) == {os.environ["OPENBLAS_CORETYPE"]}, blas
    disabled = set(os.environ["NPY_DISABLE_CPU_FEATURES"].split())
    still_on = [target for target in __cpu_dispatch__ if target in disabled and __cpu_features__.get(target)]
    assert not still_on, f"NumPy still dispatches to {still_on}"
