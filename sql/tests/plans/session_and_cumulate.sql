-- plan: mode=Final, gby=[symbol@0 as symbol, window_start@1 as window_start, window_end@2 as window_end]
CREATE TABLE trades (symbol TEXT NOT NULL, price DOUBLE NOT NULL, size DOUBLE NOT NULL, ts TIMESTAMP NOT NULL,
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
WITH (connector = 'kafka', topic = 'trades');
CREATE TABLE bursts (symbol TEXT, window_start TIMESTAMP, window_end TIMESTAMP, trades BIGINT, vwap DOUBLE)
WITH (connector = 'kafka', topic = 'bursts');
CREATE TABLE intraday (symbol TEXT, window_start TIMESTAMP, window_end TIMESTAMP, high DOUBLE, vwap DOUBLE)
WITH (connector = 'kafka', topic = 'intraday');
CREATE TABLE late (symbol TEXT, price DOUBLE, size DOUBLE, ts TIMESTAMP, late_reason TEXT,
    watermark_at_arrival TIMESTAMP, statement TEXT)
WITH (connector = 'kafka', topic = 'late');
INSERT INTO bursts SELECT symbol, window_start, window_end, count(*), sum(price * size) / sum(size)
FROM trades GROUP BY symbol, SESSION(ts, INTERVAL '30' SECOND) HAVING count(*) > 10
LATE DATA TO late;
INSERT INTO intraday SELECT symbol, window_start, window_end, max(price), sum(price * size) / sum(size)
FROM trades GROUP BY symbol, CUMULATE(ts, INTERVAL '1' MINUTE, INTERVAL '1' DAY);
