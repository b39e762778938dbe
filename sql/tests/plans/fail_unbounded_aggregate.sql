-- fail: plans/fail_unbounded_aggregate.sql:7: an aggregate over a stream never ends
CREATE TABLE trades (symbol TEXT NOT NULL, price DOUBLE NOT NULL, size DOUBLE NOT NULL, ts TIMESTAMP NOT NULL,
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
WITH (connector = 'kafka', topic = 'trades');
CREATE TABLE out (symbol TEXT, n BIGINT) WITH (connector = 'kafka', topic = 'out');

INSERT INTO out SELECT symbol, count(*) FROM trades GROUP BY symbol;
