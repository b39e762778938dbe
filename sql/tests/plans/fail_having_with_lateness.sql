-- fail: plans/fail_having_with_lateness.sql:9: HAVING cannot be combined with EMIT EVERY, EMIT ON UPDATE or ALLOW LATENESS
CREATE TABLE trades (symbol TEXT NOT NULL, price DOUBLE NOT NULL, ts TIMESTAMP NOT NULL,
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
WITH (connector = 'kafka', topic = 'trades');
CREATE TABLE out (symbol TEXT, window_start TIMESTAMP, low DOUBLE)
WITH (connector = 'kafka', topic = 'out');
INSERT INTO out SELECT symbol, window_start, min(price) FROM trades
GROUP BY symbol, TUMBLE(ts, INTERVAL '1' MINUTE) HAVING min(price) > 10
ALLOW LATENESS INTERVAL '30' SECOND;
