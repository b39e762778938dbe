-- Trades, volume and notional per hour, from the raw trades.
SELECT dt, hour,
       count(*) AS trades,
       sum(size) AS volume,
       sum(price * size) AS notional
FROM trades
GROUP BY dt, hour
ORDER BY dt, hour;
