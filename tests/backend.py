"""The backend the Python tests talk to: the module (`QUOTA.X key args`) or
the Lua library (`FCALL quota_x 1 key args`), chosen by QUOTA_BACKEND, which
tests/run.py sets for the scripts it runs. Clients from here translate
commands, so a test is written once for both."""

import os

import redis
from redis.client import Pipeline
from redis.cluster import RedisCluster

BACKEND = os.environ.get("QUOTA_BACKEND", "module")
KEYLESS = {"PRICE", "ESTIMATE", "DEBUG"}


def translate(args):
    """`QUOTA.X key args` as the backend takes it."""
    if BACKEND != "lua" or not args or not isinstance(args[0], str) or not args[0].upper().startswith("QUOTA."):
        return args
    name = args[0][6:].upper()
    function = "quota_" + name.lower()
    if name == "PRICE" and len(args) > 1 and str(args[1]).upper() in ("GET", "LIST"):
        function = "quota_price_ro"
    if name in KEYLESS:
        return ("FCALL", function, 0) + tuple(args[1:])
    return ("FCALL", function, 1) + tuple(args[1:])


class TranslatingPipeline(Pipeline):
    def execute_command(self, *args, **kwargs):
        return super().execute_command(*translate(args), **kwargs)


class Redis(redis.Redis):
    def execute_command(self, *args, **options):
        return super().execute_command(*translate(args), **options)

    def pipeline(self, transaction=True, shard_hint=None):
        return TranslatingPipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)


class Cluster(RedisCluster):
    def execute_command(self, *args, **kwargs):
        return super().execute_command(*translate(args), **kwargs)
