-- fail: SortExec (ORDER BY, LIMIT or OVER over the whole stream) is not supported
CREATE TABLE trades (symbol TEXT NOT NULL, price DOUBLE NOT NULL, size DOUBLE NOT NULL, ts TIMESTAMP NOT NULL,
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
WITH (connector = 'kafka', topic = 'trades');
CREATE TABLE out (symbol TEXT) WITH (connector = 'kafka', topic = 'out');
INSERT INTO out SELECT symbol FROM trades ORDER BY price;
