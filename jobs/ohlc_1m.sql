-- 1-minute candles per symbol: open, high, low, close, volume, VWAP and trade count,
-- from the `trades` topic to the derived topic `ohlc_1m` and the lake table `ohlc_1m`.
--
--   engine run jobs/ohlc_1m.sql              # keeps running; Ctrl-C stops cleanly
--   engine run jobs/ohlc_1m.sql --bounded    # reads what is there now, emits every window, exits
--
-- Settings come from the environment (defaults after `:-`).

CREATE TABLE trades (
    symbol TEXT NOT NULL,
    price  DOUBLE NOT NULL CHECK (price > 0),   -- a record failing a CHECK is dead-lettered
    size   DOUBLE NOT NULL CHECK (size > 0),
    ts     TIMESTAMP NOT NULL,             -- epoch milliseconds or RFC 3339, UTC
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (
    connector = 'kafka',
    bootstrap_servers = '${KAFKA_BROKERS:-127.0.0.1:9092}',
    topic = '${TRADES_TOPIC:-trades}',
    group_id = '${OHLC_GROUP:-engine.ohlc_1m}',
    key_field = 'symbol',                  -- records are keyed by symbol (checked per record)
    format = 'json',
    -- After this long without any trade (a market closed), the watermark goes on with
    -- the wall clock so the last windows close (`off`: they wait for the next trade).
    watermark.idle_advance = '${IDLE_ADVANCE:-off}'
);

CREATE TABLE ohlc_1m_topic (
    symbol TEXT, window_start TIMESTAMP, window_end TIMESTAMP,
    open DOUBLE, high DOUBLE, low DOUBLE, close DOUBLE,
    volume DOUBLE, vwap DOUBLE, trades BIGINT
) WITH (
    connector = 'kafka',
    bootstrap_servers = '${KAFKA_BROKERS:-127.0.0.1:9092}',
    topic = '${OHLC_TOPIC:-ohlc_1m}',
    key_field = 'symbol',                  -- record timestamp = window_end
    format = 'json',
    -- at_least_once: candles go out as windows close (a crash replays some, identical);
    -- exactly_once: each checkpoint's candles in one Kafka transaction (see README).
    sink.commit_mode = '${OHLC_COMMIT_MODE:-at_least_once}'
);

CREATE TABLE ohlc_1m_lake (
    symbol TEXT, window_start TIMESTAMP, window_end TIMESTAMP,
    open DOUBLE, high DOUBLE, low DOUBLE, close DOUBLE,
    volume DOUBLE, vwap DOUBLE, trades BIGINT
) WITH (
    connector = 'lake',
    path = '${LAKE_URL:-./lake}/ohlc_1m',  -- ohlc_1m/dt=YYYY-MM-DD/part-....parquet
    partition_by = 'dt',
    format = 'parquet'
);

-- One computation, two sinks: statements that read a view with SELECT * share it.
CREATE VIEW ohlc_1m AS
SELECT symbol, window_start, window_end,
       first_value(price ORDER BY ts) AS open,
       max(price) AS high,
       min(price) AS low,
       last_value(price ORDER BY ts) AS close,
       -- Sums as DECIMAL: exact, so they do not depend on how rows were batched, and a
       -- window replayed after a crash has the same volume and VWAP to the last digit.
       CAST(sum(CAST(size AS DECIMAL(38, 8))) AS DOUBLE) AS volume,
       CAST(sum(CAST(price * size AS DECIMAL(38, 8))) AS DOUBLE)
           / CAST(sum(CAST(size AS DECIMAL(38, 8))) AS DOUBLE) AS vwap,
       count(*) AS trades
FROM trades
GROUP BY symbol, TUMBLE(ts, INTERVAL '1' MINUTE);

INSERT INTO ohlc_1m_topic SELECT * FROM ohlc_1m;
INSERT INTO ohlc_1m_lake SELECT * FROM ohlc_1m;
