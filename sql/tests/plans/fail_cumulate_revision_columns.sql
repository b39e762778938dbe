-- fail: plans/fail_cumulate_revision_columns.sql:7: window_final and window_revision need TUMBLE or HOP: CUMULATE(ts, step 60000 ms, max 86400000 ms) emits each window once
CREATE TABLE trades (symbol TEXT NOT NULL, price DOUBLE NOT NULL, ts TIMESTAMP NOT NULL,
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
WITH (connector = 'kafka', topic = 'trades');
CREATE TABLE out (symbol TEXT, window_start TIMESTAMP, revision BIGINT, high DOUBLE)
WITH (connector = 'kafka', topic = 'out');
INSERT INTO out SELECT symbol, window_start, window_revision, max(price) FROM trades
GROUP BY symbol, CUMULATE(ts, INTERVAL '1' MINUTE, INTERVAL '1' DAY);
