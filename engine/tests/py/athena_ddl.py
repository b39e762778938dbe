"""Parses Athena DDL (stdin) with sqlglot's Athena dialect, independently of the
engine, and prints what each CREATE TABLE declares as JSON (one object per
statement). Exits non-zero on anything that is not a clean CREATE EXTERNAL TABLE."""
import json
import sys

import sqlglot
from sqlglot import exp

out = []
for statement in sqlglot.parse(sys.stdin.read(), read="athena"):
    if statement is None:
        continue
    if not isinstance(statement, exp.Create) or statement.args.get("kind") != "TABLE":
        sys.exit(f"not a CREATE TABLE: {statement.sql('athena')[:200]}")
    schema = statement.this
    table = schema.this
    info = {
        "database": table.db,
        "table": table.name,
        "columns": [[c.name, c.args["kind"].sql("athena").lower()] for c in schema.expressions],
        "external": False,
        "partitioned_by": [],
        "format": None,
        "location": None,
        "properties": {},
    }
    for p in statement.args["properties"].expressions:
        if isinstance(p, exp.ExternalProperty):
            info["external"] = True
        elif isinstance(p, exp.PartitionedByProperty):
            info["partitioned_by"] = [
                [e.name, e.args["kind"].sql("athena").lower()] for e in p.this.expressions
            ]
        elif isinstance(p, exp.FileFormatProperty):
            info["format"] = p.this.name
        elif isinstance(p, exp.LocationProperty):
            info["location"] = p.this.name
        elif isinstance(p, exp.Property):
            info["properties"][p.name] = p.args["value"].name
        else:
            sys.exit(f"unexpected table property: {p.sql('athena')}")
    out.append(info)
print(json.dumps(out))
