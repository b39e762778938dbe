-- plan: FilterExec
CREATE TABLE trades (symbol TEXT NOT NULL, price DOUBLE NOT NULL, size DOUBLE NOT NULL, ts TIMESTAMP NOT NULL,
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
WITH (connector = 'kafka', topic = 'trades');
CREATE TABLE out (symbol TEXT, notional DOUBLE, ts TIMESTAMP)
WITH (connector = 'lake', path = '/tmp/x');
INSERT INTO out SELECT upper(symbol), price * size, ts FROM trades WHERE price > 0;
