"""Creates a table in a real Glue API (moto server at AWS_ENDPOINT_URL) from a
`aws glue create-table --cli-input-json` document on stdin, reads it back, and
prints the stored TableInput fields as JSON."""
import json
import os
import sys

import boto3

request = json.load(sys.stdin)
glue = boto3.client(
    "glue",
    endpoint_url=os.environ["AWS_ENDPOINT_URL"],
    region_name=os.environ.get("AWS_REGION", "us-east-1"),
)
try:
    glue.create_database(DatabaseInput={"Name": request["DatabaseName"]})
except glue.exceptions.AlreadyExistsException:
    pass
glue.create_table(**request)
table = glue.get_table(DatabaseName=request["DatabaseName"], Name=request["TableInput"]["Name"])["Table"]
print(json.dumps({k: table[k] for k in request["TableInput"] if k in table}, default=str))
