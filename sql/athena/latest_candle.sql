-- The latest 1-minute candle of every symbol.
SELECT symbol, window_start, open, high, low, close, volume, vwap, trades
FROM (
    SELECT *, row_number() OVER (PARTITION BY symbol ORDER BY window_start DESC) AS rn
    FROM ohlc_1m
) AS ranked
WHERE rn = 1
ORDER BY symbol;
