"""DuckDB as the Athena stand-in: reads the lake (s3:// on the local S3 API, or
a directory) independently of the engine, with Hive partitions kept as
strings (`hive_types_autocast=false`), as Athena types them.

  duckdb_lake.py query LAKE_URL SQL_FILE   rows of an Athena query (transpiled
                                           to DuckDB by sqlglot), JSON lines
  duckdb_lake.py raw_stats LAKE_URL        per (dt, hour) of table `trades`: rows,
                                           distinct (symbol, ts), notional; JSON
Timestamps are printed as epoch milliseconds."""
import datetime
import decimal
import glob
import json
import os
import sys

import duckdb
import duckdb_extension_httpfs
import sqlglot


def connect(lake):
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    if lake.startswith("s3://"):
        ext = glob.glob(
            os.path.join(os.path.dirname(duckdb_extension_httpfs.__file__), "extensions", "*", "httpfs.duckdb_extension")
        )[0]
        con.execute(f"LOAD '{ext}'")
        endpoint = os.environ["AWS_ENDPOINT_URL"].split("://", 1)[1]
        con.execute(
            f"""CREATE SECRET (TYPE s3, KEY_ID '{os.environ["AWS_ACCESS_KEY_ID"]}',
                SECRET '{os.environ["AWS_SECRET_ACCESS_KEY"]}', REGION 'us-east-1',
                ENDPOINT '{endpoint}', URL_STYLE 'path', USE_SSL false)"""
        )
    lake = lake.rstrip("/")
    for table, depth in [("ohlc_1m", "*"), ("intraday_vwap", "*"), ("trades", "*/*")]:
        try:
            con.execute(
                f"""CREATE VIEW {table} AS SELECT * FROM read_parquet('{lake}/{table}/{depth}/*.parquet',
                    hive_partitioning = true, hive_types_autocast = false)"""
            )
        except duckdb.IOException:
            pass  # no files for this table: a query naming it fails, saying so
    return con


def plain(v):
    if isinstance(v, datetime.datetime):
        if v.tzinfo is None:
            v = v.replace(tzinfo=datetime.timezone.utc)
        return int(v.timestamp() * 1000)
    if isinstance(v, decimal.Decimal):
        return float(v)
    return v


def rows(con, sql):
    cur = con.execute(sql)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, map(plain, r))) for r in cur.fetchall()]


command, lake = sys.argv[1], sys.argv[2]
con = connect(lake)
if command == "query":
    athena_sql = open(sys.argv[3]).read()
    (duck_sql,) = sqlglot.transpile(athena_sql, read="athena", write="duckdb")
    for row in rows(con, duck_sql):
        print(json.dumps(row))
elif command == "raw_stats":
    print(json.dumps(rows(con, """
        SELECT dt, hour, count(*) AS rows, count(DISTINCT (symbol, ts)) AS distinct_trades,
               sum(price * size) AS notional
        FROM trades GROUP BY dt, hour ORDER BY dt, hour""")))
else:
    sys.exit(f"unknown command {command}")
