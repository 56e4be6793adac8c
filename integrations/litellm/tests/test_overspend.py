"""The overspend measurement (overspend.py) with a small N: the hook admits
exactly k calls and spends at most the budget; LiteLLM's own budget check is
printed (it admits every concurrent call: its spend is only known after)."""

import pytest

from conftest import BACKENDS
from overspend import measure


@pytest.mark.parametrize("backend", BACKENDS)
def test_overspend(backend, capsys):
    out, cost, budget = measure(n=12, k=3, delay=0.5, backend=backend, mechanisms=["provider_budget_config"])
    litellm_run, hook = out
    with capsys.disabled():
        for r in out:
            print(f"\n  {r['mechanism']}: admitted {r['admitted']} of 12, spend {r['spend']}, budget {budget}, "
                  f"overspend {r['overspend_pct']}%, then HTTP {r['after']}")
    assert hook["admitted"] == 3 and hook["served"] == 3
    assert hook["overspend"] == 0 and hook["charged"] == budget and hook["held"] == 0
    assert hook["after"] == 429
    # LiteLLM's own check does stop calls once it knows the spend ...
    assert litellm_run["after"] != 200
    # ... but not the concurrent ones (printed above; not a property of quota)
    assert litellm_run["served"] >= 3
