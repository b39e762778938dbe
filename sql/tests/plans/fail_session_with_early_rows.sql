-- fail: plans/fail_session_with_early_rows.sql:8: SESSION(ts, gap 30000 ms, max length 86400000 ms) emits each window once, when the watermark passes its end: EMIT EVERY, EMIT ON UPDATE and ALLOW LATENESS need TUMBLE or HOP
CREATE TABLE trades (symbol TEXT NOT NULL, price DOUBLE NOT NULL, ts TIMESTAMP NOT NULL,
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
WITH (connector = 'kafka', topic = 'trades');
CREATE TABLE out (symbol TEXT, window_start TIMESTAMP, high DOUBLE)
WITH (connector = 'kafka', topic = 'out');
INSERT INTO out SELECT symbol, window_start, max(price) FROM trades
GROUP BY symbol, SESSION(ts, INTERVAL '30' SECOND) EMIT EVERY INTERVAL '1' SECOND;
