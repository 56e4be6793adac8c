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


@pytest.mark.parametrize("backend", BACKENDS)
def test_overspend_when_the_estimate_is_low(backend, capsys):
    # F16: the run above is the hook's best case (its estimate equals the cost). Here the
    # provider reports twice the prompt tokens the hook counted: each admitted call costs
    # more than it reserved, and the hook overspends by that estimate error, bounded by the
    # calls the budget admits by the estimate (k), not by N.
    out, cost, budget = measure(n=12, k=3, delay=0.5, backend=backend, mechanisms=[], prompt_factor=2)
    (hook,) = out
    estimate = budget / 3
    with capsys.disabled():
        print(f"\n  {hook['mechanism']} (provider reports 2x the counted prompt): admitted {hook['admitted']} of 12, "
              f"charged {hook['charged']}, budget {budget}, overspend {hook['overspend_pct']}%")
    assert 1 <= hook["admitted"] <= 3 and hook["held"] == 0
    assert hook["charged"] == hook["admitted"] * cost and cost > estimate
    assert hook["overspend"] <= 3 * (cost - estimate)
    assert hook["after"] == 429
