-- fail: plans/fail_clauses_on_insert_from_view.sql:9: EMIT, ALLOW LATENESS and LATE DATA TO of a view go on its CREATE VIEW (line 7)
CREATE TABLE trades (symbol TEXT NOT NULL, price DOUBLE NOT NULL, ts TIMESTAMP NOT NULL,
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
WITH (connector = 'kafka', topic = 'trades');
CREATE TABLE out (symbol TEXT, window_start TIMESTAMP, high DOUBLE)
WITH (connector = 'kafka', topic = 'out');
CREATE VIEW highs AS SELECT symbol, window_start, max(price) FROM trades
GROUP BY symbol, TUMBLE(ts, INTERVAL '1' MINUTE);
INSERT INTO out SELECT * FROM highs EMIT EVERY INTERVAL '1' SECOND;
