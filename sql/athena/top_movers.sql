-- The ten symbols that moved most on 2025-11-20, open to close, in percent.
WITH day AS (
    SELECT symbol, open, close,
           row_number() OVER (PARTITION BY symbol ORDER BY window_start) AS from_open,
           row_number() OVER (PARTITION BY symbol ORDER BY window_start DESC) AS from_close
    FROM ohlc_1m
    WHERE dt = '2025-11-20'
),
ends AS (
    SELECT symbol,
           max(CASE WHEN from_open = 1 THEN open END) AS open,
           max(CASE WHEN from_close = 1 THEN close END) AS close
    FROM day
    GROUP BY symbol
),
moves AS (
    SELECT symbol, open, close, (close - open) / open * 100 AS change_pct
    FROM ends
)
SELECT symbol, open, close, change_pct
FROM moves
ORDER BY abs(change_pct) DESC, symbol
LIMIT 10;
