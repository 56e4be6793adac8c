"""quota_client: a Python client for quota (hierarchical usage quotas in
Redis, as a module or a Functions library) over redis-py.

    import redis
    from decimal import Decimal
    from quota_client import Quota

    q = Quota(redis.Redis())
    r = q.reserve("acme", path="projects/p1", also=["members/u7"], cost={"credits": Decimal("30")})
    if r.allowed:
        q.commit("acme", r.id, cost={"credits": Decimal("27.5")})
"""

from .client import AsyncQuota, Quota, SPECS
from .errors import (AlreadySettled, ArityError, Conflict, Denied, EvictionRefused, InvalidAmount, LayoutError, LimitExceeded,
                     NotFound, NotLoaded, PartialWrite, PermissionDenied, QuotaError, QuotaSyntaxError, ServerError, UnknownMetric,
                     WrongType, error_from_text)
from .helpers import Batch, EventFeed, HoldExpired, HoldHandle
from .items import Cost, Usage
from .replies import (AccessRule, AccessRules, Charge, Check, Commit, Draw, Estimate, EstimateLine, Event, Extend,
                      Gap, Grant, GrantReply, HistoryPeriod, Hold, Labels, Multiplier, Node, Plan, PolicyState,
                      Price, Release, Reservation, Revoke, TreeNode, UsageBucket, UsageGroup, UsageReport)

__version__ = "0.1.0"

__all__ = [
    "Quota", "AsyncQuota", "SPECS", "Cost", "Usage", "Batch", "EventFeed", "HoldHandle", "HoldExpired",
    "QuotaError", "ArityError", "QuotaSyntaxError", "InvalidAmount", "UnknownMetric", "LimitExceeded", "NotFound",
    "EvictionRefused", "PermissionDenied", "WrongType", "LayoutError", "Conflict", "ServerError", "NotLoaded",
    "Denied", "AlreadySettled", "PartialWrite", "error_from_text",
    "AccessRule", "AccessRules", "Charge", "Check", "Commit", "Draw", "Estimate", "EstimateLine", "Event", "Extend",
    "Gap", "Grant", "GrantReply", "HistoryPeriod", "Hold", "Labels", "Multiplier", "Node", "Plan", "PolicyState",
    "Price", "Release", "Reservation", "Revoke", "TreeNode", "UsageBucket", "UsageGroup", "UsageReport",
]
