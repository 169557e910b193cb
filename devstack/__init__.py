"""The local development stack: what runs keyscope on one machine, never in production.

`stack` starts and stops the broker, the ClickHouse HTTP endpoint over chDB, Redis, a Ray head and the Serve
app; `simulate` makes seeded typists and their tests; `loopback/` keeps every Ray listener on 127.0.0.1;
`clickhouse_http/` is the ClickHouse HTTP endpoint that fronts the chDB engine.
"""
