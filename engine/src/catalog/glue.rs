//! The Glue `CreateTable` input (`aws glue create-table --cli-input-json`).

use serde_json::{json, Value};

use super::CatalogTable;

impl CatalogTable {
    /// `{"DatabaseName": ..., "TableInput": {...}}`: an external Parquet table
    /// with the same columns, partitions and properties as [`Self::athena_ddl`].
    pub fn glue_table_input(&self) -> Value {
        let column = |(name, ty): &(String, String)| json!({"Name": name, "Type": ty});
        let mut parameters = self.parameters();
        parameters.insert("EXTERNAL".into(), "TRUE".into());
        json!({
            "DatabaseName": self.database,
            "TableInput": {
                "Name": self.name,
                "TableType": "EXTERNAL_TABLE",
                "Parameters": parameters,
                "PartitionKeys": self
                    .partition_keys
                    .iter()
                    .map(|k| json!({"Name": k, "Type": "string"}))
                    .collect::<Vec<_>>(),
                "StorageDescriptor": {
                    "Columns": self.columns.iter().map(column).collect::<Vec<_>>(),
                    "Location": self.location,
                    "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
                    "OutputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
                    "SerdeInfo": {
                        "SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe",
                        "Parameters": {"serialization.format": "1"}
                    }
                }
            }
        })
    }
}
