-- plan: DataSourceExec
CREATE TABLE trades (symbol TEXT, price DOUBLE, part INT METADATA FROM 'partition',
    off BIGINT METADATA FROM 'offset', at TIMESTAMP METADATA FROM 'timestamp')
WITH (connector = 'kafka', topic = 'trades');
CREATE TABLE out (symbol TEXT, part INT, off BIGINT, at TIMESTAMP) WITH (connector = 'kafka', topic = 'out');
INSERT INTO out SELECT symbol, part, off, at FROM trades;
