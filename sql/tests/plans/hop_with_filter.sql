-- plan: FilterExec: size@2 >= 100
CREATE TABLE trades (symbol TEXT NOT NULL, price DOUBLE NOT NULL, size DOUBLE NOT NULL, ts TIMESTAMP NOT NULL,
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
WITH (connector = 'kafka', topic = 'trades');
CREATE TABLE out (symbol TEXT, window_end TIMESTAMP, vwap DOUBLE)
WITH (connector = 'kafka', topic = 'out');
INSERT INTO out
SELECT symbol, window_end, sum(price * size) / sum(size) FROM trades WHERE size >= 100
GROUP BY symbol, HOP(ts, INTERVAL '1' MINUTE, INTERVAL '5' MINUTE);
