-- 1-minute candles as they form: the current candle of every symbol that traded, every
-- second, then the final one when the minute closes, and a correction for each trade that
-- arrives up to 30 s after its minute closed. Trades later than that go to `trades_late`.
--
--   engine run jobs/ohlc_1m_live.sql
--
-- Every record carries `window_revision` (0, 1, 2, ... per candle) and `window_final`
-- (false while the minute is open): a consumer that upserts by (symbol, window_start)
-- always holds the latest candle, and the final one at the end.

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
    group_id = '${LIVE_GROUP:-engine.ohlc_1m_live}',
    key_field = 'symbol',
    format = 'json',
    -- After this long without any trade, the watermark goes on with the wall clock.
    watermark.idle_advance = '${IDLE_ADVANCE:-off}'
);

CREATE TABLE ohlc_1m_live (
    symbol TEXT, window_start TIMESTAMP, window_end TIMESTAMP,
    window_revision BIGINT, window_final BOOLEAN,
    open DOUBLE, high DOUBLE, low DOUBLE, close DOUBLE,
    volume DOUBLE, vwap DOUBLE, trades BIGINT
) WITH (
    connector = 'kafka',
    bootstrap_servers = '${KAFKA_BROKERS:-127.0.0.1:9092}',
    topic = '${LIVE_TOPIC:-ohlc_1m_live}',
    key_field = 'symbol',                  -- record timestamp = window_end
    format = 'json'
);

-- Each trade that came too late for its minute: the trade's columns, then why, the
-- watermark it met, and the statement (`ohlc_1m_live`).
CREATE TABLE trades_late (
    symbol TEXT, price DOUBLE, size DOUBLE, ts TIMESTAMP,
    late_reason TEXT, watermark_at_arrival TIMESTAMP, statement TEXT
) WITH (
    connector = 'kafka',
    bootstrap_servers = '${KAFKA_BROKERS:-127.0.0.1:9092}',
    topic = '${LATE_TOPIC:-trades_late}',
    key_field = 'symbol',
    timestamp_field = 'watermark_at_arrival',
    format = 'json'
);

INSERT INTO ohlc_1m_live
SELECT symbol, window_start, window_end, window_revision, window_final,
       first_value(price ORDER BY ts) AS open,
       max(price) AS high,
       min(price) AS low,
       last_value(price ORDER BY ts) AS close,
       CAST(sum(CAST(size AS DECIMAL(38, 8))) AS DOUBLE) AS volume,
       CAST(sum(CAST(price * size AS DECIMAL(38, 8))) AS DOUBLE)
           / CAST(sum(CAST(size AS DECIMAL(38, 8))) AS DOUBLE) AS vwap,
       count(*) AS trades
FROM trades
GROUP BY symbol, TUMBLE(ts, INTERVAL '1' MINUTE)
EMIT EVERY INTERVAL '1' SECOND
ALLOW LATENESS INTERVAL '30' SECOND
LATE DATA TO trades_late;
