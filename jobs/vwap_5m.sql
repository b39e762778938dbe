-- 5-minute VWAP per symbol, updated every minute (hopping window), to the topic `vwap_5m`.
--
--   engine run jobs/vwap_5m.sql

CREATE TABLE trades (
    symbol TEXT NOT NULL,
    price  DOUBLE NOT NULL CHECK (price > 0),   -- a record failing a CHECK is dead-lettered
    size   DOUBLE NOT NULL CHECK (size > 0),
    ts     TIMESTAMP NOT NULL,
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (
    connector = 'kafka',
    bootstrap_servers = '${KAFKA_BROKERS:-127.0.0.1:9092}',
    topic = '${TRADES_TOPIC:-trades}',
    group_id = '${VWAP_GROUP:-engine.vwap_5m}',
    key_field = 'symbol',                  -- records are keyed by symbol (checked per record)
    format = 'json',
    -- After this long without any trade (a market closed), the watermark goes on with
    -- the wall clock so the last windows close (`off`: they wait for the next trade).
    watermark.idle_advance = '${IDLE_ADVANCE:-off}'
);

CREATE TABLE vwap_5m (
    symbol TEXT, window_start TIMESTAMP, window_end TIMESTAMP,
    vwap DOUBLE, volume DOUBLE, trades BIGINT
) WITH (
    connector = 'kafka',
    bootstrap_servers = '${KAFKA_BROKERS:-127.0.0.1:9092}',
    topic = '${VWAP_TOPIC:-vwap_5m}',
    key_field = 'symbol',
    format = 'json'
);

INSERT INTO vwap_5m
SELECT symbol, window_start, window_end,
       -- Exact DECIMAL sums: a window replayed after a crash is the same to the last digit.
       CAST(sum(CAST(price * size AS DECIMAL(38, 8))) AS DOUBLE)
           / CAST(sum(CAST(size AS DECIMAL(38, 8))) AS DOUBLE) AS vwap,
       CAST(sum(CAST(size AS DECIMAL(38, 8))) AS DOUBLE) AS volume,
       count(*) AS trades
FROM trades
GROUP BY symbol, HOP(ts, INTERVAL '1' MINUTE, INTERVAL '5' MINUTE);
