-- The running intraday figures per symbol since midnight UTC, one row a minute:
-- open, high, low, last price, volume, VWAP and trade count of the day so far,
-- from the `trades` topic to the derived topic `intraday_vwap` and the lake table
-- `intraday_vwap` (one row per symbol and minute; dt = the day).
--
--   engine run jobs/intraday_vwap.sql             # keeps running; Ctrl-C stops cleanly
--   engine run jobs/intraday_vwap.sql --bounded   # reads what is there now, emits every
--                                                 # window of each day seen (to midnight), exits;
--                                                 # a later run's trades of those days are late
--
-- CUMULATE(ts, step, max) has Flink's semantics: every window of a day starts at
-- the day's start and one ends every step, so the row ending at 14:31 covers
-- 00:00-14:31. Settings come from the environment (defaults after `:-`).

CREATE TABLE trades (
    symbol TEXT NOT NULL,
    price  DOUBLE NOT NULL CHECK (price > 0),
    size   DOUBLE NOT NULL CHECK (size > 0),
    ts     TIMESTAMP NOT NULL,
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (
    connector = 'kafka',
    bootstrap_servers = '${KAFKA_BROKERS:-127.0.0.1:9092}',
    topic = '${TRADES_TOPIC:-trades}',
    group_id = '${INTRADAY_GROUP:-engine.intraday_vwap}',
    key_field = 'symbol',
    format = 'json',
    watermark.idle_advance = '${IDLE_ADVANCE:-off}'
);

CREATE TABLE intraday_vwap_topic (
    symbol TEXT, window_start TIMESTAMP, window_end TIMESTAMP,
    open DOUBLE, high DOUBLE, low DOUBLE, last DOUBLE,
    volume DOUBLE, vwap DOUBLE, trades BIGINT
) WITH (
    connector = 'kafka',
    bootstrap_servers = '${KAFKA_BROKERS:-127.0.0.1:9092}',
    topic = '${INTRADAY_TOPIC:-intraday_vwap}',
    key_field = 'symbol',                  -- record timestamp = window_end
    format = 'json'
);

CREATE TABLE intraday_vwap_lake (
    symbol TEXT, window_start TIMESTAMP, window_end TIMESTAMP,
    open DOUBLE, high DOUBLE, low DOUBLE, last DOUBLE,
    volume DOUBLE, vwap DOUBLE, trades BIGINT
) WITH (
    connector = 'lake',
    path = '${LAKE_URL:-./lake}/intraday_vwap',  -- intraday_vwap/dt=YYYY-MM-DD/part-....parquet
    partition_by = 'dt',                   -- by window_start: the day
    format = 'parquet'
);

CREATE VIEW intraday_vwap AS
SELECT symbol, window_start, window_end,
       first_value(price ORDER BY ts) AS open,
       max(price) AS high,
       min(price) AS low,
       last_value(price ORDER BY ts) AS last,
       -- DECIMAL sums: exact, so a replay has the same VWAP to the last digit.
       CAST(sum(CAST(size AS DECIMAL(38, 8))) AS DOUBLE) AS volume,
       CAST(sum(CAST(price * size AS DECIMAL(38, 8))) AS DOUBLE)
           / CAST(sum(CAST(size AS DECIMAL(38, 8))) AS DOUBLE) AS vwap,
       count(*) AS trades
FROM trades
GROUP BY symbol, CUMULATE(ts, INTERVAL '1' MINUTE, INTERVAL '1' DAY);

INSERT INTO intraday_vwap_topic SELECT * FROM intraday_vwap;
INSERT INTO intraday_vwap_lake SELECT * FROM intraday_vwap;
