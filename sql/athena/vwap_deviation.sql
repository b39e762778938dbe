-- How far each symbol's 1-minute closes sit from their VWAP, per day, in basis points.
SELECT symbol, dt,
       count(*) AS candles,
       avg(abs(close - vwap) / vwap * 10000) AS mean_abs_bps,
       max(abs(close - vwap) / vwap * 10000) AS max_abs_bps
FROM ohlc_1m
WHERE volume > 0
GROUP BY symbol, dt
ORDER BY symbol, dt;
