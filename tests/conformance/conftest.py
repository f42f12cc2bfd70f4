"""The conformance harness (like scikit-learn's ``check_estimator``): every registered model, twin kind, drug
and alert rule passes the same checks. Shared helpers live in :mod:`tests.conformance.harness`; the
test-only twin kinds of ``tests/twinkinds/`` are registered before collection so they are checked too."""

from __future__ import annotations

from tests.conformance.harness import load_test_kinds

load_test_kinds()
