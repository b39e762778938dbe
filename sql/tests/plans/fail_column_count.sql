-- fail: plans/fail_column_count.sql:6: the SELECT gives 2 columns (symbol, price) but sink `out` has 1 (symbol)
CREATE TABLE trades (symbol TEXT NOT NULL, price DOUBLE NOT NULL, size DOUBLE NOT NULL, ts TIMESTAMP NOT NULL,
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
WITH (connector = 'kafka', topic = 'trades');
CREATE TABLE out (symbol TEXT) WITH (connector = 'kafka', topic = 'out');
INSERT INTO out SELECT symbol, price FROM trades;
