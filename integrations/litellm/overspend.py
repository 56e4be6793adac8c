"""Overspend: N concurrent requests against a budget that admits k of them.

(a) LiteLLM's own budget check, one that works without a database: the
    router's `provider_budget_config` (a budget per provider, spend kept in
    LiteLLM's in-memory cache; deployment `max_budget`/`budget_duration` is the
    same limiter per deployment), with the deployment's cost per token set so
    LiteLLM prices each call exactly as quota's price book does;
(b) the quota hook: a `credits` budget of the same amount on the tree's root.

Every call costs the same: the fake model answers after `--delay` seconds with
prompt_tokens = what litellm.token_counter counts for the prompt and
completion_tokens = max_tokens, so the hook's reservation equals the actual
cost. The budget is k × that cost. Reported per run: calls admitted (answered
200 by the proxy, and calls the model served), what they cost, the budget, and
the overspend in percent of the budget.

    target/venv-litellm/bin/python integrations/litellm/overspend.py --n 50 --k 10 --delay 1
"""

import argparse
import asyncio
import os
import sys
import threading
from decimal import Decimal

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import httpx  # noqa: E402
import redis  # noqa: E402

from harness import Proxy, RedisServer, model_entry  # noqa: E402
from fake_openai import FakeOpenAI  # noqa: E402
from quota_client import Quota  # noqa: E402

IN_RATE, OUT_RATE = Decimal("0.000001"), Decimal("0.000002")  # credits (= dollars) per token
COMPLETION = 100


def setup_call(delay):
    import litellm

    # the prompt names its own token count: find the count that counts itself
    prompt = 1
    for _ in range(10):
        messages = [{"role": "user", "content": f"delay={delay} completion_tokens={COMPLETION} prompt_tokens={prompt}"}]
        counted = litellm.token_counter(model="gpt-x", messages=messages)
        if counted == prompt:
            break
        prompt = counted
    else:
        raise RuntimeError("no stable prompt token count")
    cost = IN_RATE * prompt + OUT_RATE * COMPLETION
    return messages, prompt, cost


async def fire(url, key, messages, n):
    async with httpx.AsyncClient(base_url=url, timeout=120,
                                 limits=httpx.Limits(max_connections=n + 10)) as client:
        async def one():
            r = await client.post("/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                                  json={"model": "gpt-x", "messages": messages, "max_tokens": COMPLETION})
            return r.status_code
        return await asyncio.gather(*(one() for _ in range(n)))


def run(url, key, messages, n, fake):
    before = fake.requests
    codes = asyncio.run(fire(url, key, messages, n))
    served = fake.requests - before
    # then one more, alone: shows the budget is enforced once the spend is known
    after = asyncio.run(fire(url, key, messages, 1))[0]
    hist = {c: codes.count(c) for c in sorted(set(codes))}
    return {"ok": codes.count(200), "codes": hist, "served": served, "after": after}


def result(name, admitted, spend, budget, extra=None):
    over = max(Decimal(0), spend - budget)
    r = {"mechanism": name, "admitted": admitted, "spend": spend, "budget": budget,
         "overspend": over, "overspend_pct": (over / budget * 100).quantize(Decimal("0.1"))}
    r.update(extra or {})
    return r


def litellm_setups(fake, budget, priced):
    """LiteLLM's own budget checks that work without a database, each as the
    proxy config that turns it on."""
    b = float(budget)
    return {
        "provider_budget_config": dict(
            models=[model_entry("gpt-x", fake.url, priced)],
            router_settings={"provider_budget_config": {"openai": {"budget_limit": b, "time_period": "1d"}}}),
        "deployment max_budget": dict(
            models=[dict(model_entry("gpt-x", fake.url, dict(priced, max_budget=b, budget_duration="1d")),
                         model_info={"id": "gpt-x-deployment-1"})]),
        "litellm_settings max_budget": dict(
            models=[model_entry("gpt-x", fake.url, priced)],
            litellm_settings={"max_budget": b}),
    }


def measure(n=50, k=10, delay=1.0, backend="module", quiet=False, mechanisms=None):
    messages, prompt, cost = setup_call(delay)
    budget = cost * k
    fake = FakeOpenAI().start()
    server = None
    made = {}
    out = []
    try:
        server = RedisServer(backend, test_clock=False)
        q = Quota(redis.Redis(port=server.port))
        q.price_set("chat/gpt-x", {"metric": "credits", "rates": {"input_tokens": str(IN_RATE),
                                                                    "output_tokens": str(OUT_RATE)}})
        tree = "overspend"
        q.set(tree, "/", "budget", metric="credits", limit=budget)
        priced = {"input_cost_per_token": float(IN_RATE), "output_cost_per_token": float(OUT_RATE)}
        setups = litellm_setups(fake, budget, priced)
        names = list(setups if mechanisms is None else mechanisms)
        configs = {name: setups[name] for name in names}
        configs["hook"] = dict(
            models=[model_entry("gpt-x", fake.url, priced)],
            quota={"redis": {"url": server.url, "backend": backend}, "tree": tree, "path": "users/{user_id}",
                   "models": {"gpt-x": "chat/gpt-x"}, "ttl_ms": 120000})

        def start(name):
            made[name] = Proxy(**configs[name])

        threads = [threading.Thread(target=start, args=(name,)) for name in configs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if set(made) != set(configs):
            raise RuntimeError(f"proxies that did not start: {sorted(set(configs) - set(made))}")

        for name in names:
            a = run(made[name].url, "sk-master", messages, n, fake)
            out.append(result(f"litellm {name}", a["ok"], cost * a["served"], budget,
                              {"served": a["served"], "codes": a["codes"], "after": a["after"]}))
        b = run(made["hook"].url, "sk-master", messages, n, fake)
        node = q.get(tree, "/")
        charged = node.spent.get("credits", Decimal(0)) if node.spent else Decimal(0)
        held = node.policies[0].held
        out.append(result(f"quota hook ({backend})", b["ok"], cost * b["served"], budget,
                          {"served": b["served"], "codes": b["codes"], "after": b["after"], "charged": charged,
                           "held": held}))
    finally:
        for p in made.values():
            p.stop()
        if server is not None:
            server.stop()
        fake.stop()
    if not quiet:
        print(f"N={n} concurrent requests, budget admits k={k} (each call {prompt} prompt + {COMPLETION} "
              f"completion tokens = {cost} credits, budget {budget}), model latency {delay}s")
        for r in out:
            print(f"  {r['mechanism']:38s} admitted {r['admitted']:3d}  spend {r['spend']}  "
                  f"budget {r['budget']}  overspend {r['overspend']} ({r['overspend_pct']}%)"
                  + f"  (one more request afterwards: HTTP {r['after']})  statuses {r['codes']}"
                  + (f"  [quota charged {r['charged']}, held {r['held']}]" if "charged" in r else ""))
    return out, cost, budget


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--delay", type=float, default=1.0)
    ap.add_argument("--backend", choices=["module", "lua"], default="module")
    ap.add_argument("--litellm", action="append", help="LiteLLM budget check(s) to measure (default: all): "
                    "provider_budget_config, 'deployment max_budget', 'litellm_settings max_budget'")
    args = ap.parse_args()
    chosen = None if args.litellm is None else [m for m in args.litellm if m != "none"]
    out, _, _ = measure(args.n, args.k, args.delay, args.backend, mechanisms=chosen)
    hook = out[-1]
    if hook["overspend"] != 0 or hook["admitted"] != args.k:
        print("FAILED: the hook overspent or admitted other than k", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
