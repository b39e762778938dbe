-- fail: plans/fail_unknown_type.sql:3: column `payload`: unsupported type
CREATE TABLE trades (symbol TEXT,
    payload BLOB)
WITH (connector = 'kafka', topic = 'trades');
