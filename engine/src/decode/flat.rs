//! A JSON decoder specialised to one table's schema, for the shape market
//! data almost always has: one flat object of scalars per record.
//!
//! arrow-json's decoder is general: it builds a tape of every value of
//! every record, then walks the tape once per column. For a 70-byte trade
//! that general machinery is most of the cost of reading it. This decoder
//! scans each record once, matches each key against the table's few field
//! names and parses the value straight into its column, with the very
//! functions arrow-json uses for the same types (`lexical_core` for
//! numbers, arrow's `string_to_datetime` for RFC 3339 times), so a row it
//! produces is the row arrow-json would produce.
//!
//! It takes only records it is sure of. Anything else, from an escape in a
//! string to a nested value, a duplicate key, a number in a text column or
//! plain garbage, it leaves to arrow-json's decoder, which accepts it or
//! says precisely what is wrong. So it is an accelerator, never a second
//! opinion: a record is either read here exactly as arrow-json reads it,
//! or read by arrow-json. A differential test holds it to that.

use std::sync::Arc;

use arrow::array::timezone::Tz;
use arrow::array::{
    ArrayRef, BooleanBuilder, Float32Builder, Float64Builder, Int16Builder, Int32Builder,
    Int64Builder, StringBuilder, TimestampMillisecondBuilder,
};
use arrow::compute::kernels::cast_utils::string_to_datetime;
use arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;

use super::json::RawRecord;
use crate::error::{EngineError, Result};

/// The decoder of one table's flat records (see the module doc).
#[derive(Debug)]
pub struct FlatDecoder {
    schema: SchemaRef,
    fields: Vec<(Box<[u8]>, Kind)>,
}

/// A column type this decoder reads, as arrow-json reads it.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Text,
    Float64,
    Float32,
    Int64,
    Int32,
    Int16,
    Boolean,
    /// Milliseconds, in the column's time zone (for strings without an offset).
    Timestamp(Tz),
}

/// One field's value in the record being read.
#[derive(Clone, Copy)]
enum Slot {
    Absent,
    Null,
    /// A string without escapes: its bytes' range in the payload.
    Text(u32, u32),
    Float(f64),
    Int(i64),
    Bool(bool),
}

impl FlatDecoder {
    /// The decoder of the JSON fields `schema`, if every field has a type
    /// it reads (text, floating point, integers, booleans, timestamps in
    /// milliseconds); `None` leaves the table to arrow-json.
    pub fn for_schema(schema: &SchemaRef) -> Option<Self> {
        let fields = schema.fields().iter().map(|f| {
            let kind = match f.data_type() {
                DataType::Utf8 => Kind::Text,
                DataType::Float64 => Kind::Float64,
                DataType::Float32 => Kind::Float32,
                DataType::Int64 => Kind::Int64,
                DataType::Int32 => Kind::Int32,
                DataType::Int16 => Kind::Int16,
                DataType::Boolean => Kind::Boolean,
                DataType::Timestamp(TimeUnit::Millisecond, tz) => Kind::Timestamp(match tz {
                    Some(tz) => tz.parse().ok()?,
                    None => "+00:00".parse().ok()?,
                }),
                _ => return None,
            };
            Some((f.name().as_bytes().into(), kind))
        });
        let fields: Vec<(Box<[u8]>, Kind)> = fields.collect::<Option<_>>()?;
        // Without JSON fields a batch of it would have no columns to count its rows;
        // with a name twice arrow-json reads only the first (the DDL refuses both anyway).
        let mut names: Vec<&[u8]> = fields.iter().map(|(n, _)| &**n).collect();
        names.sort_unstable();
        names.dedup();
        if fields.is_empty() || names.len() != fields.len() {
            return None;
        }
        Some(Self {
            schema: Arc::clone(schema),
            fields,
        })
    }

    /// Reads the records at `idx` (indices into `records`) that it is sure
    /// of: returns their indices and their rows, in order, and the indices
    /// it left to arrow-json.
    pub fn decode(
        &self,
        records: &[RawRecord],
        idx: &[usize],
    ) -> Result<(Vec<usize>, RecordBatch, Vec<usize>)> {
        let mut columns: Vec<Column> = (self.fields.iter())
            .map(|(_, kind)| Column::new(*kind, idx.len()))
            .collect();
        let mut slots = vec![Slot::Absent; self.fields.len()];
        let (mut read, mut left) = (Vec::with_capacity(idx.len()), Vec::new());
        // A text column's offsets are `i32`: past that much text, arrow-json says so.
        let mut text_bytes = 0usize;
        for &i in idx {
            let payload = records[i].payload.unwrap_or_default();
            text_bytes += payload.len();
            if text_bytes > i32::MAX as usize {
                left.push(i);
                continue;
            }
            match self.read(payload, &mut slots) {
                Some(()) => {
                    for (column, slot) in columns.iter_mut().zip(&slots) {
                        column.append(*slot, payload);
                    }
                    read.push(i);
                }
                None => left.push(i),
            }
        }
        let arrays: Vec<ArrayRef> = (columns.into_iter().zip(self.schema.fields()))
            .map(|(c, f)| c.finish(f.data_type()))
            .collect();
        let batch = RecordBatch::try_new(Arc::clone(&self.schema), arrays)
            .map_err(|e| EngineError::Internal(format!("flat JSON batch: {e}")))?;
        Ok((read, batch, left))
    }

    /// Reads one record into `slots`, or `None` if arrow-json should.
    fn read(&self, payload: &[u8], slots: &mut [Slot]) -> Option<()> {
        // arrow-json checks that all of a batch's text is UTF-8; outside
        // strings a record this decoder takes is ASCII anyway.
        if !payload.is_ascii() && std::str::from_utf8(payload).is_err() {
            return None;
        }
        if payload.len() > u32::MAX as usize {
            return None;
        }
        slots.fill(Slot::Absent);
        let mut s = Scanner { b: payload, at: 0 };
        s.space();
        s.expect(b'{')?;
        s.space();
        // Records of one feed list their fields in one order: the field after
        // the last one found is tried first.
        let mut next_field = 0;
        if s.peek() == Some(b'}') {
            s.at += 1;
        } else {
            loop {
                let (from, to) = s.string()?;
                let key = &payload[from..to];
                s.space();
                s.expect(b':')?;
                s.space();
                let f = self.field(key, next_field);
                next_field = f.map_or(0, |f| f + 1);
                match f {
                    // A repeated key: arrow-json keeps the last, unchecked the first.
                    Some(f) if !matches!(slots[f], Slot::Absent) => return None,
                    Some(f) => slots[f] = s.value(self.fields[f].1)?,
                    None => s.skip_scalar()?,
                }
                s.space();
                match s.next()? {
                    b',' => s.space(),
                    b'}' => break,
                    _ => return None,
                }
            }
        }
        s.space();
        (s.at == payload.len()).then_some(())
    }
}

impl FlatDecoder {
    /// The field named `key`, trying field `hint` first.
    fn field(&self, key: &[u8], hint: usize) -> Option<usize> {
        let is = |f: &(Box<[u8]>, Kind)| f.0.len() == key.len() && *f.0 == *key;
        match self.fields.get(hint) {
            Some(f) if is(f) => Some(hint),
            _ => self.fields.iter().position(is),
        }
    }
}

/// A cursor over one payload. Every method returns `None` where the text is
/// not what this decoder is sure of.
struct Scanner<'a> {
    b: &'a [u8],
    at: usize,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.at += 1;
        Some(c)
    }

    fn expect(&mut self, c: u8) -> Option<()> {
        (self.next()? == c).then_some(())
    }

    /// Skips JSON whitespace.
    fn space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    /// A string without escapes or control characters: its contents' range.
    fn string(&mut self) -> Option<(usize, usize)> {
        self.expect(b'"')?;
        let from = self.at;
        let len = self.b[from..]
            .iter()
            .position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
        let to = from + len;
        // Stopped at a quote: the end; at an escape or a control character: not ours.
        (self.b[to] == b'"').then(|| {
            self.at = to + 1;
            (from, to)
        })
    }

    /// A number as the JSON grammar has it: its text, and whether it is an integer.
    fn number(&mut self) -> Option<(&[u8], bool)> {
        let from = self.at;
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.next()? {
            b'0' => {}
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        let mut integer = true;
        if self.peek() == Some(b'.') {
            self.at += 1;
            self.digit()?;
            self.digits();
            integer = false;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.at += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            self.digit()?;
            self.digits();
            integer = false;
        }
        Some((&self.b[from..self.at], integer))
    }

    fn digit(&mut self) -> Option<()> {
        self.next().filter(u8::is_ascii_digit).map(|_| ())
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.at += 1;
        }
    }

    /// `word` (true, false, null) exactly.
    fn word(&mut self, word: &[u8]) -> Option<()> {
        let end = self.at + word.len();
        (self.b.get(self.at..end)? == word).then(|| self.at = end)
    }

    /// A value of a field of `kind`, parsed as arrow-json parses it.
    fn value(&mut self, kind: Kind) -> Option<Slot> {
        if self.peek()? == b'n' {
            self.word(b"null")?;
            return Some(Slot::Null);
        }
        Some(match kind {
            Kind::Text => {
                let (from, to) = self.string()?;
                Slot::Text(from as u32, to as u32)
            }
            Kind::Float64 => Slot::Float(lexical_core::parse::<f64>(self.number()?.0).ok()?),
            Kind::Float32 => Slot::Float(lexical_core::parse::<f32>(self.number()?.0).ok()? as f64),
            Kind::Int64 => Slot::Int(self.integer::<i64>()?),
            Kind::Int32 => Slot::Int(self.integer::<i32>()? as i64),
            Kind::Int16 => Slot::Int(self.integer::<i16>()? as i64),
            Kind::Boolean => match self.peek()? {
                b't' => self.word(b"true").map(|_| Slot::Bool(true))?,
                _ => self.word(b"false").map(|_| Slot::Bool(false))?,
            },
            Kind::Timestamp(tz) => match self.peek()? {
                b'"' => {
                    let (from, to) = self.string()?;
                    let text = std::str::from_utf8(&self.b[from..to]).ok()?;
                    Slot::Int(string_to_datetime(&tz, text).ok()?.timestamp_millis())
                }
                _ => Slot::Int(self.integer::<i64>()?),
            },
        })
    }

    /// An integer in range of `N` (arrow-json reads others through `f64`:
    /// those it leaves to arrow-json).
    fn integer<N: lexical_core::FromLexical>(&mut self) -> Option<N> {
        match self.number()? {
            (text, true) => lexical_core::parse::<N>(text).ok(),
            _ => None,
        }
    }

    /// The value of a field the table does not have: a scalar (a nested
    /// value is left to arrow-json, which checks all of it).
    fn skip_scalar(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(|_| ()),
            b't' => self.word(b"true"),
            b'f' => self.word(b"false"),
            b'n' => self.word(b"null"),
            _ => self.number().map(|_| ()),
        }
    }
}

/// The column being built for one field.
enum Column {
    Text(StringBuilder),
    Float64(Float64Builder),
    Float32(Float32Builder),
    Int64(Int64Builder),
    Int32(Int32Builder),
    Int16(Int16Builder),
    Boolean(BooleanBuilder),
    Timestamp(TimestampMillisecondBuilder),
}

impl Column {
    fn new(kind: Kind, rows: usize) -> Self {
        match kind {
            Kind::Text => Self::Text(StringBuilder::with_capacity(rows, rows * 8)),
            Kind::Float64 => Self::Float64(Float64Builder::with_capacity(rows)),
            Kind::Float32 => Self::Float32(Float32Builder::with_capacity(rows)),
            Kind::Int64 => Self::Int64(Int64Builder::with_capacity(rows)),
            Kind::Int32 => Self::Int32(Int32Builder::with_capacity(rows)),
            Kind::Int16 => Self::Int16(Int16Builder::with_capacity(rows)),
            Kind::Boolean => Self::Boolean(BooleanBuilder::with_capacity(rows)),
            Kind::Timestamp(_) => Self::Timestamp(TimestampMillisecondBuilder::with_capacity(rows)),
        }
    }

    /// Appends `slot` (its text is in `payload`); a field absent or null is a null.
    fn append(&mut self, slot: Slot, payload: &[u8]) {
        macro_rules! put {
            ($b:expr, $v:expr) => {
                match slot {
                    Slot::Absent | Slot::Null => $b.append_null(),
                    _ => $b.append_value($v),
                }
            };
        }
        // `read` filled each slot with its field's kind of value.
        let (float, int, flag) = match slot {
            Slot::Float(v) => (v, 0, false),
            Slot::Int(v) => (0.0, v, false),
            Slot::Bool(v) => (0.0, 0, v),
            _ => (0.0, 0, false),
        };
        match self {
            Self::Text(b) => match slot {
                Slot::Text(from, to) => {
                    let text = &payload[from as usize..to as usize];
                    // Checked as UTF-8 when the record was read.
                    b.append_value(std::str::from_utf8(text).unwrap_or_default())
                }
                _ => b.append_null(),
            },
            Self::Float64(b) => put!(b, float),
            Self::Float32(b) => put!(b, float as f32),
            Self::Int64(b) => put!(b, int),
            Self::Int32(b) => put!(b, int as i32),
            Self::Int16(b) => put!(b, int as i16),
            Self::Boolean(b) => put!(b, flag),
            Self::Timestamp(b) => put!(b, int),
        }
    }

    fn finish(self, data_type: &DataType) -> ArrayRef {
        match self {
            Self::Text(mut b) => Arc::new(b.finish()),
            Self::Float64(mut b) => Arc::new(b.finish()),
            Self::Float32(mut b) => Arc::new(b.finish()),
            Self::Int64(mut b) => Arc::new(b.finish()),
            Self::Int32(mut b) => Arc::new(b.finish()),
            Self::Int16(mut b) => Arc::new(b.finish()),
            Self::Boolean(mut b) => Arc::new(b.finish()),
            Self::Timestamp(mut b) => Arc::new(b.finish().with_data_type(data_type.clone())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::json::tests::raw;
    use crate::decode::JsonDecoder;
    use engine_sql::ddl::parse_create_table;
    use rand::{rngs::StdRng, Rng, SeedableRng};

    /// A table with a column of every type the flat decoder reads.
    fn decoder() -> JsonDecoder {
        let table = parse_create_table(
            "CREATE TABLE t (symbol TEXT NOT NULL, price DOUBLE, size FLOAT, qty BIGINT, n INT,
               s SMALLINT, ok BOOLEAN, ts TIMESTAMP, off BIGINT METADATA FROM 'offset')
             WITH (connector = 'kafka')",
            1,
        )
        .unwrap();
        JsonDecoder::new(&table, "t", 1 << 20)
    }

    // Per type, values read alike by both decoders, then odd ones (escapes,
    // numbers outside the grammar or the type, times in other shapes).
    const TEXTS: (&[&str], &[&str]) = (
        &[r#""AAPL""#, r#""é€ü""#, r#""""#, r#""a b""#],
        &[
            r#""x\"y""#,
            "\"tab\there\"",
            r#""\u0041""#,
            r#""\q""#,
            "\"\u{7f}\"",
            "12",
        ],
    );
    const FLOATS: (&[&str], &[&str]) = (
        &[
            "189.12", "100", "-0", "0", "1e3", "1E+3", "-1.5e-7", "4.9e-324", "1.0",
        ],
        &[
            "01",
            "1.",
            ".5",
            "+1",
            "1e400",
            "-1e400",
            "NaN",
            "Infinity",
            r#""1.5""#,
            "-",
            "1e",
            "1.5e+",
            "0x10",
            "1_000",
            "2.5e-324",
            "0.1000000000000000055511151231257827",
            "123456789012345678901234567890",
        ],
    );
    const INTS: (&[&str], &[&str]) = (
        &[
            "100",
            "-0",
            "0",
            "32767",
            "-32768",
            "2147483647",
            "9223372036854775807",
        ],
        &[
            "32768",
            "-32769",
            "2147483648",
            "9223372036854775808",
            "-9223372036854775809",
            "1.0",
            "1e3",
            "1.5",
            r#""7""#,
            "01",
            "-",
        ],
    );
    const FLAGS: (&[&str], &[&str]) = (
        &["true", "false"],
        &["True", "1", r#""true""#, "nul", "falsey"],
    );
    const TIMES: (&[&str], &[&str]) = (
        &[
            "1763649000123",
            r#""2025-11-20T14:30:00.125Z""#,
            "-1",
            r#""2025-11-20T14:30:00+02:00""#,
        ],
        &[
            r#""2025-11-20 14:30:00""#,
            r#""2025-11-20""#,
            r#""garbage""#,
            "1.5e12",
            "99999999999999999999",
            r#""+275760-09-13T00:00:00Z""#,
            r#""2025-13-45T99:00:00Z""#,
        ],
    );
    const NESTED: &[&str] = &[r#"{"a":[1,2]}"#, "[1", "[]", "{}", r#"[{"b":null}]"#, "{"];
    const SPACE: &[&str] = &["", "", "", "", "", " ", "\t", "\n", "\r", "  "];
    const ODD_SPACE: &[&str] = &["\u{a0}", "\u{b}", "\u{c}"];

    /// A record built to probe the edges: fields in any order, values of
    /// every kind in any field, odd spacing, unknown and repeated keys, and
    /// whole-record damage.
    fn record(rng: &mut StdRng) -> Vec<u8> {
        let fields = [
            ("symbol", TEXTS),
            ("price", FLOATS),
            ("size", FLOATS),
            ("qty", INTS),
            ("n", INTS),
            ("s", INTS),
            ("ok", FLAGS),
            ("ts", TIMES),
        ];
        let all: [&[&str]; 10] = [
            TEXTS.0, TEXTS.1, FLOATS.0, FLOATS.1, INTS.0, INTS.1, FLAGS.0, FLAGS.1, TIMES.0,
            TIMES.1,
        ];
        fn pick<'a>(rng: &mut StdRng, pool: &[&'a str]) -> &'a str {
            pool[rng.random_range(0..pool.len())]
        }
        let any = |rng: &mut StdRng| all[rng.random_range(0..all.len())];
        let sp = |rng: &mut StdRng| match rng.random_bool(0.005) {
            true => pick(rng, ODD_SPACE),
            false => pick(rng, SPACE),
        };
        let mut parts = Vec::new();
        for (name, (good, odd)) in fields {
            if rng.random_bool(0.1) {
                continue;
            }
            let value = match rng.random_range(0..40) {
                0 => {
                    let pool = any(rng);
                    pick(rng, pool)
                }
                1 => "null",
                2 => pick(rng, odd),
                _ => pick(rng, good),
            };
            parts.push(format!("\"{name}\"{}:{}{value}", sp(rng), sp(rng)));
            if rng.random_bool(0.02) {
                parts.push(format!("\"{name}\":{}", pick(rng, good)));
            }
        }
        if rng.random_bool(0.1) {
            let value = match rng.random_bool(0.3) {
                true => pick(rng, NESTED),
                false => {
                    let pool = any(rng);
                    pick(rng, pool)
                }
            };
            let at = rng.random_range(0..=parts.len());
            parts.insert(at, format!("\"extra\":{value}"));
        }
        let mut text = String::from(sp(rng));
        text.push('{');
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                text.push_str(sp(rng));
                text.push(',');
            }
            text.push_str(sp(rng));
            text.push_str(p);
        }
        text.push_str(sp(rng));
        text.push('}');
        text.push_str(sp(rng));
        let mut bytes = text.into_bytes();
        match rng.random_range(0..80) {
            0 => bytes.truncate(rng.random_range(0..bytes.len())),
            1 => bytes.extend_from_slice(b"x"),
            2 => bytes.extend_from_slice(br#"{"symbol":"B"}"#),
            3 => {
                let at = rng.random_range(0..bytes.len());
                bytes.insert(at, 0xff);
            }
            4 => {
                let at = rng.random_range(0..bytes.len());
                bytes[at] = rng.random();
            }
            5 => bytes = pick(rng, &["[1]", "5", r#""s""#, "null", "{,}", r#"{"a" 1}"#]).into(),
            6 => bytes.push(b','),
            _ => {}
        }
        bytes
    }

    /// Over a corpus of hostile records, the decoder with the flat path
    /// gives exactly what arrow-json alone gives: the same rows in the same
    /// order, the same bad records with the same errors.
    #[test]
    fn reads_every_record_as_arrow_json_does() {
        let mut rng = StdRng::seed_from_u64(17);
        let (with, without) = (decoder(), decoder().general_only());
        let flat = FlatDecoder::for_schema(&with.json_schema_for_tests()).unwrap();
        let (mut read_flat, mut total) = (0, 0);
        for round in 0..300 {
            let n = [1, 7, 64, 300][round % 4];
            let payloads: Vec<Vec<u8>> = (0..n).map(|_| record(&mut rng)).collect();
            let records = raw(&payloads);
            let (batch, bad) = with.decode(&records).unwrap();
            let (expected, expected_bad) = without.decode(&records).unwrap();
            assert_eq!(bad, expected_bad, "round {round}");
            assert_eq!(batch, expected, "round {round}");
            let all: Vec<usize> = (0..n).collect();
            read_flat += flat.decode(&records, &all).unwrap().0.len();
            total += n;
        }
        // The corpus reaches both decoders, not only the general one.
        assert!(
            read_flat > total / 10,
            "flat decoder read {read_flat} of {total}"
        );
        assert!(
            read_flat < total * 9 / 10,
            "flat decoder read {read_flat} of {total}"
        );
    }

    #[test]
    fn reads_the_simulator_shape_itself() {
        let payloads: Vec<Vec<u8>> = (0..100)
            .map(|i| {
                format!(
                    r#"{{"symbol":"S{i:03}","price":{}.25,"size":{i},"ts":{}}}"#,
                    100 + i,
                    1_763_649_000_000i64 + i
                )
                .into_bytes()
            })
            .collect();
        let records = raw(&payloads);
        let d = decoder();
        let flat = FlatDecoder::for_schema(&d.json_schema_for_tests()).unwrap();
        let all: Vec<usize> = (0..100).collect();
        let (read, batch, left) = flat.decode(&records, &all).unwrap();
        assert_eq!((read.len(), left.len()), (100, 0));
        let (expected, _) = d.general_only().decode(&records).unwrap();
        assert_eq!(batch.columns(), &expected.columns()[..8]);
    }

    #[test]
    fn a_table_of_metadata_columns_only_still_decodes() {
        let table = parse_create_table(
            "CREATE TABLE t (k TEXT METADATA FROM 'key', off BIGINT METADATA FROM 'offset')
             WITH (connector = 'kafka')",
            1,
        )
        .unwrap();
        let d = JsonDecoder::new(&table, "t", 1 << 20);
        assert!(FlatDecoder::for_schema(&d.json_schema_for_tests()).is_none());
        let payloads = vec![br#"{"a":1}"#.to_vec(), br#"{"b":2}"#.to_vec()];
        let (batch, bad) = d.decode(&raw(&payloads)).unwrap();
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(batch.num_rows(), 2);
    }

    #[test]
    fn leaves_a_table_with_other_types_to_arrow_json() {
        let table = parse_create_table(
            "CREATE TABLE t (d DATE, x DECIMAL(10, 2)) WITH (connector = 'kafka')",
            1,
        )
        .unwrap();
        let d = JsonDecoder::new(&table, "t", 1 << 20);
        assert!(FlatDecoder::for_schema(&d.json_schema_for_tests()).is_none());
    }

    #[test]
    fn keeps_record_order_when_both_decoders_read() {
        let payloads: Vec<Vec<u8>> = [
            r#"{"symbol":"A","qty":1}"#,
            r#"{"symbol":"B","qty":1.0}"#,
            r#"{"symbol":"C","qty":3}"#,
            r#"{"symbol":"D\u0021","qty":4}"#,
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
        let (batch, bad) = decoder().decode(&raw(&payloads)).unwrap();
        assert!(bad.is_empty(), "{bad:?}");
        let off = batch
            .column(8)
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .unwrap();
        assert_eq!(off.values(), &[0, 1, 2, 3]);
    }
}
