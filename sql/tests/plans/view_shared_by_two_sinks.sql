-- plan: AggregateExec: mode=Final
CREATE TABLE trades (symbol TEXT NOT NULL, price DOUBLE NOT NULL, size DOUBLE NOT NULL, ts TIMESTAMP NOT NULL,
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
WITH (connector = 'kafka', topic = 'trades');
CREATE TABLE a (symbol TEXT, n BIGINT) WITH (connector = 'kafka', topic = 'a');
CREATE TABLE b (symbol TEXT, n BIGINT) WITH (connector = 'lake', path = '/tmp/b', partition_by = 'none');
CREATE VIEW counts AS SELECT symbol, count(*) AS n FROM trades GROUP BY symbol, TUMBLE(ts, INTERVAL '10' SECOND);
INSERT INTO a SELECT * FROM counts;
INSERT INTO b SELECT * FROM counts;
