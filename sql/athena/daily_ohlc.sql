-- Daily OHLC per symbol, rolled up from the 1-minute candles.
WITH ranked AS (
    SELECT symbol, dt, open, high, low, close, volume, vwap, trades,
           row_number() OVER (PARTITION BY symbol, dt ORDER BY window_start) AS from_open,
           row_number() OVER (PARTITION BY symbol, dt ORDER BY window_start DESC) AS from_close
    FROM ohlc_1m
)
SELECT symbol, dt,
       max(CASE WHEN from_open = 1 THEN open END) AS open,
       max(high) AS high,
       min(low) AS low,
       max(CASE WHEN from_close = 1 THEN close END) AS close,
       sum(volume) AS volume,
       sum(vwap * volume) / sum(volume) AS vwap,
       sum(trades) AS trades
FROM ranked
GROUP BY symbol, dt
ORDER BY symbol, dt;
