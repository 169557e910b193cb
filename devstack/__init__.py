"""The local development stack: what runs keyscope on one machine, never in production.

`stack` starts and stops the broker, the ClickHouse HTTP endpoint over chDB, Redis, a Ray head and the Serve
app; `simulate` makes seeded typists and their tests; `loopback/` keeps every Ray listener on its node's address
(127.0.0.1); `clickhouse_http/` is the ClickHouse HTTP endpoint that fronts the chDB engine. `second_node` adds a Ray
node in a network namespace, `two_nodes` runs a stack with one, `cluster_state` asks Ray where its work runs.
"""
