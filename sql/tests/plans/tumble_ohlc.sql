-- plan: AggregateExec: mode=Partial, gby=[symbol@0 as symbol, window_start@3 as window_start, window_end@4 as window_end]
-- plan: AggregateExec: mode=Final
CREATE TABLE trades (symbol TEXT NOT NULL, price DOUBLE NOT NULL, size DOUBLE NOT NULL, ts TIMESTAMP NOT NULL,
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
WITH (connector = 'kafka', topic = 'trades');
CREATE TABLE out (symbol TEXT, window_start TIMESTAMP, open DOUBLE, close DOUBLE, n BIGINT)
WITH (connector = 'kafka', topic = 'out');
INSERT INTO out
SELECT symbol, window_start, first_value(price ORDER BY ts), last_value(price ORDER BY ts), count(*)
FROM trades GROUP BY symbol, TUMBLE(ts, INTERVAL '1' MINUTE);
