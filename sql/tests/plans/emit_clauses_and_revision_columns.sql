-- plan: mode=Final, gby=[symbol@0 as symbol, window_start@1 as window_start, window_end@2 as window_end, window_final@3 as window_final, window_revision@4 as window_revision]
CREATE TABLE trades (symbol TEXT NOT NULL, price DOUBLE NOT NULL, ts TIMESTAMP NOT NULL,
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
WITH (connector = 'kafka', topic = 'trades');
CREATE TABLE out (symbol TEXT, window_start TIMESTAMP, revision BIGINT, final BOOLEAN, high DOUBLE)
WITH (connector = 'kafka', topic = 'out');
CREATE TABLE late (symbol TEXT, price DOUBLE, ts TIMESTAMP, why TEXT, wm TIMESTAMP, statement TEXT)
WITH (connector = 'lake', path = '/tmp/late', partition_time_field = 'wm');
CREATE VIEW highs AS SELECT symbol, window_start, window_revision, window_final, max(price) FROM trades
GROUP BY symbol, TUMBLE(ts, INTERVAL '1' MINUTE)
LATE DATA TO late
ALLOW LATENESS INTERVAL '30' SECOND
EMIT EVERY INTERVAL '500' MILLISECOND;
INSERT INTO out SELECT * FROM highs;
