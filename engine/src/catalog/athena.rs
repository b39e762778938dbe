//! `CREATE EXTERNAL TABLE` for Athena.

use super::CatalogTable;

impl CatalogTable {
    /// The Athena DDL creating this table, with partition projection in its
    /// table properties (no crawler, no `MSCK REPAIR TABLE`).
    pub fn athena_ddl(&self) -> String {
        let quote = |s: &str| s.replace('\'', "''");
        let mut ddl = format!(
            "CREATE EXTERNAL TABLE IF NOT EXISTS `{}`.`{}` (\n",
            self.database, self.name
        );
        let columns: Vec<String> = self
            .columns
            .iter()
            .map(|(name, ty)| format!("  `{name}` {ty}"))
            .collect();
        ddl.push_str(&columns.join(",\n"));
        ddl.push_str("\n)\n");
        if !self.partition_keys.is_empty() {
            let keys: Vec<String> = self
                .partition_keys
                .iter()
                .map(|k| format!("`{k}` string"))
                .collect();
            ddl.push_str(&format!("PARTITIONED BY ({})\n", keys.join(", ")));
        }
        ddl.push_str("STORED AS PARQUET\n");
        ddl.push_str(&format!("LOCATION '{}'\n", quote(&self.location)));
        let properties: Vec<String> = self
            .parameters()
            .iter()
            .map(|(k, v)| format!("  '{}'='{}'", quote(k), quote(v)))
            .collect();
        ddl.push_str(&format!(
            "TBLPROPERTIES (\n{}\n);\n",
            properties.join(",\n")
        ));
        ddl
    }
}
