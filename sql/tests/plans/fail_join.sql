-- fail: plans/fail_join.sql:6: the SELECT must read FROM exactly one table
CREATE TABLE trades (symbol TEXT NOT NULL, price DOUBLE NOT NULL, size DOUBLE NOT NULL, ts TIMESTAMP NOT NULL,
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
WITH (connector = 'kafka', topic = 'trades');
CREATE TABLE out (symbol TEXT) WITH (connector = 'kafka', topic = 'out');
INSERT INTO out SELECT a.symbol FROM trades a JOIN trades b ON a.symbol = b.symbol;
