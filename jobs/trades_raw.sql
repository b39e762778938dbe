-- Every raw trade to the lake table `trades`, partitioned by event date and hour (UTC).
--
--   engine run jobs/trades_raw.sql

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
    group_id = '${RAW_GROUP:-engine.trades_raw}',
    format = 'json',
    -- After this long without any trade (a market closed), the watermark goes on with
    -- the wall clock so the last windows close (`off`: they wait for the next trade).
    watermark.idle_advance = '${IDLE_ADVANCE:-off}'
);

CREATE TABLE trades_lake (
    symbol TEXT, price DOUBLE, size DOUBLE, ts TIMESTAMP
) WITH (
    connector = 'lake',
    path = '${LAKE_URL:-./lake}/trades',
    partition_by = 'dt,hour',
    partition_time_field = 'ts',
    rolling.file_size = '${RAW_FILE_SIZE:-128MB}',
    rolling.interval = '5min',
    format = 'parquet'
);

INSERT INTO trades_lake
SELECT symbol, price, size, ts FROM trades;
