//! Arrow column types as Athena (Hive DDL) names them.

use arrow::datatypes::DataType;

/// The Athena type of an Arrow column, or `None` if Athena cannot read it
/// from Parquet as written by the lake sink.
///
/// ```
/// use arrow::datatypes::{DataType, TimeUnit};
/// use engine::catalog::athena_type;
/// assert_eq!(athena_type(&DataType::Float64).as_deref(), Some("double"));
/// assert_eq!(athena_type(&DataType::Decimal128(18, 4)).as_deref(), Some("decimal(18,4)"));
/// assert_eq!(
///     athena_type(&DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))).as_deref(),
///     Some("timestamp")
/// );
/// ```
pub fn athena_type(t: &DataType) -> Option<String> {
    Some(
        match t {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "string",
            DataType::Float64 => "double",
            DataType::Float32 => "float",
            DataType::Int64 => "bigint",
            DataType::Int32 => "int",
            DataType::Int16 => "smallint",
            DataType::Int8 => "tinyint",
            DataType::Boolean => "boolean",
            DataType::Date32 => "date",
            DataType::Binary | DataType::LargeBinary => "binary",
            // The sink writes INT64 TIMESTAMP(MILLIS, UTC), which Athena reads as timestamp.
            DataType::Timestamp(..) => "timestamp",
            DataType::Decimal128(p, s) => return Some(format!("decimal({p},{s})")),
            _ => return None,
        }
        .to_string(),
    )
}
