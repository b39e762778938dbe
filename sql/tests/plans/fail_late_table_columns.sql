-- fail: plans/fail_late_table_columns.sql:11: LATE DATA TO gives 6 columns (symbol, price, ts, late_reason, watermark_at_arrival, statement) but sink `late` has 3
CREATE TABLE trades (symbol TEXT NOT NULL, price DOUBLE NOT NULL, ts TIMESTAMP NOT NULL,
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
WITH (connector = 'kafka', topic = 'trades');
CREATE TABLE out (symbol TEXT, window_start TIMESTAMP, high DOUBLE)
WITH (connector = 'kafka', topic = 'out');
CREATE TABLE late (symbol TEXT, price DOUBLE, ts TIMESTAMP)
WITH (connector = 'kafka', topic = 'late');
INSERT INTO out SELECT symbol, window_start, max(price) FROM trades
GROUP BY symbol, TUMBLE(ts, INTERVAL '1' MINUTE)
LATE DATA TO late;
