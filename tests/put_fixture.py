#!/usr/bin/env python3
"""Copies a file of tests/fixtures into a server's folder, for a scenario's
`@restart` to load it: `@python tests/put_fixture.py books-aux-v1.rdb
$workdir/old/dump.rdb` (the servers the runner starts keep their RDB as
dump.rdb in $workdir/<server>).

books-aux-v1.rdb was written by the module before plans (commit eafb64b):
RDB aux data version 1 (the price book alone, price chat/m) and tree acme
(policy monthly at /, 7 credits charged at p1 on 2026-01-15, test clock).

before-access.rdb was written by the module before access rules (commit
5180e61, tree encoding 3), test clock at 1831507200000 (2028-01-15): tree
acme with monthly (credits, LIMIT 100, WINDOW month) at / and rpm (requests,
LIMIT 5, WINDOW rolling 60s) at members/u7, the live hold r-old (members/u7,
SERVICE chat MODEL gpt-4o, credits 10 and requests 1, expires at
1831507800000) and the remembered CHARGE c-old (95 credits at members/u7,
denied_by /#monthly, its policy check stored without `kind`)."""

import os
import shutil
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: put_fixture.py <file of tests/fixtures> <destination>")
    source = os.path.join(ROOT, "tests", "fixtures", sys.argv[1])
    shutil.copyfile(source, sys.argv[2])


if __name__ == "__main__":
    main()
