-- fail: only one window (TUMBLE, HOP, CUMULATE or SESSION) is allowed per GROUP BY
CREATE TABLE trades (symbol TEXT NOT NULL, price DOUBLE NOT NULL, size DOUBLE NOT NULL, ts TIMESTAMP NOT NULL,
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
WITH (connector = 'kafka', topic = 'trades');
CREATE TABLE out (n BIGINT) WITH (connector = 'kafka', topic = 'out');
INSERT INTO out SELECT count(*) FROM trades
GROUP BY TUMBLE(ts, INTERVAL '1' MINUTE), TUMBLE(ts, INTERVAL '2' MINUTE);
