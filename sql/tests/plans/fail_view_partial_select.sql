-- fail: a view is shared as a whole
CREATE TABLE trades (symbol TEXT NOT NULL, price DOUBLE NOT NULL, size DOUBLE NOT NULL, ts TIMESTAMP NOT NULL,
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
WITH (connector = 'kafka', topic = 'trades');
CREATE TABLE out (symbol TEXT) WITH (connector = 'kafka', topic = 'out');
CREATE VIEW v AS SELECT symbol, price FROM trades;
INSERT INTO out SELECT symbol FROM v;
