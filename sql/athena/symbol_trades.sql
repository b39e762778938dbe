-- Every trade of one symbol in a quarter of an hour. The dt and hour filters
-- prune the scan to that one partition's files.
SELECT symbol, price, size, ts
FROM trades
WHERE dt = '2025-11-20' AND hour = '23'
  AND symbol = 'SYM001'
  AND ts >= CAST('2025-11-20 23:15:00' AS timestamp)
  AND ts < CAST('2025-11-20 23:30:00' AS timestamp)
ORDER BY ts;
