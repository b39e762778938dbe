-- fail: plans/fail_window_without_watermark.sql:4: a window needs event time: declare `WATERMARK FOR ts
CREATE TABLE trades (symbol TEXT, ts TIMESTAMP) WITH (connector = 'kafka', topic = 'trades');
CREATE TABLE out (symbol TEXT, n BIGINT) WITH (connector = 'kafka', topic = 'out');
INSERT INTO out SELECT symbol, count(*) FROM trades GROUP BY symbol, TUMBLE(ts, INTERVAL '1' MINUTE);
