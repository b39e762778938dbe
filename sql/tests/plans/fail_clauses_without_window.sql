-- fail: plans/fail_clauses_without_window.sql:8: EMIT, ALLOW LATENESS and LATE DATA TO belong to a windowed GROUP BY
CREATE TABLE trades (symbol TEXT NOT NULL, price DOUBLE NOT NULL, ts TIMESTAMP NOT NULL,
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
WITH (connector = 'kafka', topic = 'trades');
CREATE TABLE out (symbol TEXT, price DOUBLE)
WITH (connector = 'kafka', topic = 'out');
INSERT INTO out SELECT symbol, price FROM trades
EMIT ON UPDATE;
